"""The compiled step (``fit(compile=True)``) against the eager step and a hand-written one.

Three sides on SparseVD LeNet-300-100 (``lenet300-loguniform``, ``sparse-vd`` guide), Fashion-
MNIST, each from the same initial parameters, one Adam step per call: :meth:`zoo.Trainer.step`
with ``compile=True`` (:mod:`zoo.train.compiled`), :meth:`zoo.Trainer.step` as ``fit`` takes it
by default, and :mod:`benchmarks.overhead`'s hand-written eager step of the same math.  Blocks
of ``steps`` steps of each side run in rotating order, ``reps`` times; the table gives medians
of milliseconds per step and of the per-repetition ratios, and the compile time (tracing and
Inductor, paid at the first step of each minibatch shape).

Usage::

    python -m benchmarks.compiled_step --threads 1 --reps 9 --steps 20 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import header
from benchmarks.overhead import sparse_vd_pair
from zoo import Trainer, create_model, load

__all__ = ["main", "time_sides"]


def time_sides(sides: dict[str, Callable[[], object]], reps: int, steps: int) -> dict:
    """Milliseconds per step of each side, ``reps`` blocks of ``steps`` in rotating order."""
    for step in sides.values():
        for _ in range(3):
            step()
    names = list(sides)
    ms: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            for _ in range(steps):
                sides[name]()
            ms[name].append(1e3 * (time.perf_counter() - started) / steps)
    return ms


def main(argv: list[str] | None = None) -> str:
    """Run the comparison and print (and return) its Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--data", default="fashion-mnist", help="dataset (default: %(default)s)")
    parser.add_argument("--out", default=None, help="folder for compiled_step.md (else: print)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load(args.data)
    torch.manual_seed(0)
    pair = sparse_vd_pair("lenet300", data, args.batch)
    zm = create_model("lenet300-loguniform", data=data, guide="sparse-vd", seed=0)
    trainer = Trainer(
        zm, data, lr=1e-3, batch_size=args.batch, progress=False, eval_every=0, compile=True
    )
    trainer.step()  # traces and compiles
    compile_s = trainer.compiled.compile_seconds
    sides = {"compiled": trainer.step, "eager": pair.zoo_step, "hand-written": pair.ref_step}
    ms = time_sides(sides, args.reps, args.steps)
    hand = ms["hand-written"]
    lines = [
        header("Compiled step, SparseVD LeNet-300-100", "cpu", "benchmarks.compiled_step", argv),
        f"batch {args.batch}, {args.threads} thread(s), compile time {compile_s:.1f} s\n",
        "| step | ms per step (median) | range | / hand-written eager (median) |",
        "|---|---|---|---|",
    ]
    for name, values in ms.items():
        ratio = statistics.median(v / h for v, h in zip(values, hand, strict=True))
        lines.append(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} "
            f"| {ratio:.3f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compiled_step.md").write_text(table)
    return table


if __name__ == "__main__":
    main()
