"""What every benchmark writes next to its numbers: date, machine, versions and command."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import platform
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyro
import torch

from zoo.data import Dataset, load, uses_data_dir
from zoo.train import describe_machine
from zoo.util import markdown_table

__all__ = [
    "add_run_arguments",
    "header",
    "load_data",
    "markdown_table",
    "torch_threads",
    "write_results",
]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every benchmark run takes: ``--device``, ``--seed``, ``--out``,
    ``--train-subset``, ``--threads`` and ``--no-progress``."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--train-subset", type=int, default=None, help="use the first N examples")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); 1 avoids stalls on a shared, busy machine",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")


@contextlib.contextmanager
def torch_threads(num: int | None) -> Iterator[None]:
    """Run with ``num`` torch CPU threads (``None``: as they are), and restore the count after,
    since a benchmark's ``main()`` may be called from a longer-lived process.

    With every core busy, a second intra-op thread waits for a time slice at each element-wise
    op: a 50x slowdown was measured on 2 shared cores.
    """
    before = torch.get_num_threads()
    if num is not None:
        torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_data(
    name: str, data_dir: str | None, device: torch.device, train_subset: int | None = None
) -> Dataset:
    """A registered data set on ``device``, cut to its first ``train_subset`` training examples.

    The cut is recorded in ``Dataset.source`` so that a checkpoint says what it was trained on.
    """
    # --data-dir names the IDX files; the other sets take none (load refuses it there)
    data = load(name, data_dir=data_dir if uses_data_dir(name) else None, device=device)
    if train_subset is None:
        return data
    return dataclasses.replace(
        data,
        x_train=data.x_train[:train_subset],
        y_train=data.y_train[:train_subset],
        source={**data.source, "train_subset": train_subset},
    )


def header(title: str, device: torch.device | str, module: str, argv: list[str] | None) -> str:
    """A Markdown preamble: title, date, machine, versions and the command that ran.

    :param module: the benchmark's module, run as ``python -m module``.
    :param argv: its arguments (``sys.argv[1:]`` when ``None``).
    """
    args = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m", module, *(shlex.quote(a) for a in args)])
    return (
        f"# {title}\n\n"
        f"- date: {datetime.date.today().isoformat()}\n"
        f"- machine: {describe_machine(device)}\n"
        f"- versions: torch {torch.__version__}, pyro {pyro.__version__}, "
        f"python {platform.python_version()}\n"
        f"- command: `{command}`\n\n"
    )


def write_results(out: str | Path, stem: str, frame: pd.DataFrame, markdown: str) -> list[Path]:
    """Write ``stem.csv`` and ``stem.md`` under ``out`` and return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.csv", out / f"{stem}.md"]
    frame.to_csv(paths[0], index=False)
    paths[1].write_text(markdown)
    return paths
