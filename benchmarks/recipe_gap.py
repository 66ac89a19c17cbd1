"""Where sparse VD's accuracy gap on LeNet-300-100 comes from, on equal budgets (issue 21).

The full recipe (``benchmarks/results/lenet300-recipe``) ends 1.84 points of test error above a
dense net trained for as many epochs, a gap set by epoch 20, when the KL weight reaches 1.
This script trains, for one budget of ``E`` epochs, a dense LeNet-300-100 (hand-written
PyTorch, :func:`benchmarks.sparse_vd.train_dense`) and SparseVD variants that all end on the
full ELBO (KL weight 1; nothing outside the Bayesian objective), each spending the same ``E``
epochs in all:

* ``recipe``: Molchanov et al.'s schedule, scaled to ``E`` (KL weight 0 for the first 2.5 %,
  linear to 1 at 10 %; lr linear to 0 over the second half), as :mod:`benchmarks.sparse_vd`;
* ``long-warmup``: the KL weight linear from 0 to 1 over the first half;
* ``pretrain``: a quarter of the budget as a dense net (the authors' lever for larger nets),
  then the recipe for the rest, the means starting from the dense weights;
* ``pretrain-long-warmup``: both.

The last 10,000 training images are held out as a validation split: every model trains on the
first 50,000, and the verdicts use the validation error; the test error is reported beside it
for every variant (none is chosen on it).  Errors are those of the pruned mean network
(``log alpha > 3`` zeroed).  Each run checkpoints every epoch and ``--resume`` continues a cut
one (a finished variant is read from ``runs/<variant>/result.json``).

Usage::

    python -m benchmarks.recipe_gap --num-epochs 40 --threads 1 --out benchmarks/results/recipe-gap
    python -m benchmarks.recipe_gap --variants recipe pretrain --num-epochs 2 --train-subset 3000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd
import torch

from benchmarks.common import header, load_data, markdown_table, torch_threads, write_results
from benchmarks.sparse_vd import DECAY_START, error_percent, paper_recipe, train_dense, warm_start
from zoo import TrainConfig, create_model, fit
from zoo.data import Dataset
from zoo.models.bnn import build_net, export_pruned, layer_report
from zoo.train import resolve_device
from zoo.util import local_params

NET = "lenet300"
#: (fraction of the budget trained dense first, KL warm-up start and end as fractions of the
#: SparseVD part)
VARIANTS = {
    "recipe": (0.0, 5 / 200, 20 / 200),
    "long-warmup": (0.0, 0.0, 0.5),
    "pretrain": (0.25, 5 / 200, 20 / 200),
    "pretrain-long-warmup": (0.25, 0.0, 0.5),
}
VALIDATION = 10_000


def split(data: Dataset, held_out: int) -> Dataset:
    """``data`` with its last ``held_out`` training examples as the test split (validation)."""
    n = data.num_train - held_out
    if n < 1:
        raise ValueError(f"{held_out} held out of {data.num_train} training examples leaves none")
    return dataclasses.replace(
        data,
        x_train=data.x_train[:n],
        y_train=data.y_train[:n],
        x_test=data.x_train[n:],
        y_test=data.y_train[n:],
        source={**data.source, "validation": held_out},
    )


def sparse_config(epochs: int, start: float, end: float, args, out: Path) -> TrainConfig:
    """The SparseVD part: Adam 1e-3, batch 100, the warm-up fractions, the paper's lr decay."""
    recipe = paper_recipe(NET, epochs, args.batch_size)
    recipe.update(kl_warmup_start=start * epochs, kl_warmup_end=end * epochs)
    resume = args.resume and (out / "checkpoint.pt").is_file()
    return TrainConfig(
        **recipe, seed=args.seed, progress=False, eval_every=0, out_dir=str(out),
        resume=resume, force=not resume,
    )  # fmt: skip


def run_variant(name: str, data: Dataset, test: Dataset, args, out: Path) -> dict:
    """Train one variant (resuming where it stopped) and return its row."""
    done = out / "runs" / name / "result.json"
    if args.resume and done.is_file():
        return json.loads(done.read_text())
    fraction, start, end = VARIANTS[name]
    pre = round(fraction * args.num_epochs)
    zm = create_model(f"{NET}-loguniform", data=data, guide="sparse-vd", seed=args.seed)
    seconds = 0.0
    if pre:
        torch.manual_seed(args.seed)
        net = build_net(zm.config, data.info)
        recipe = {**paper_recipe(NET, pre, args.batch_size), "lr_schedule": "constant"}
        ckpt = out / "runs" / name / "pretrain.pt"
        dense = train_dense(NET, data, recipe, args.seed, False, net, checkpoint=ckpt)
        seconds += dense["seconds"]
        warm_start(zm, dense["model"])
    config = sparse_config(args.num_epochs - pre, start, end, args, out / "runs" / name)
    result = fit(zm, data, config=config)
    seconds += float(result.history["seconds"].sum())
    pruned = export_pruned(zm)
    row = {
        "variant": name,
        "dense_epochs_first": pre,
        "sparsevd_epochs": args.num_epochs - pre,
        "val_error_%": error_percent(pruned, data.x_test, data.y_test),
        "test_error_%": error_percent(pruned, test.x_test, test.y_test),
        "compression": float(layer_report(zm).iloc[-1]["compression"]),
        "seconds": seconds,
    }
    done.write_text(json.dumps(row))
    return row


def dense_row(data: Dataset, test: Dataset, args, out: Path) -> dict:
    """The equal-budget dense baseline (the same lr decay as the recipe, ``E`` epochs)."""
    torch.manual_seed(args.seed)
    recipe = paper_recipe(NET, args.num_epochs, args.batch_size)
    ckpt = out / "runs" / "dense" / "checkpoint.pt"
    if not args.resume:
        ckpt.unlink(missing_ok=True)
    dense = train_dense(NET, data, recipe, args.seed, False, checkpoint=ckpt)
    return {
        "variant": "dense (PyTorch)",
        "dense_epochs_first": args.num_epochs,
        "sparsevd_epochs": 0,
        "val_error_%": error_percent(dense["model"], data.x_test, data.y_test),
        "test_error_%": error_percent(dense["model"], test.x_test, test.y_test),
        "compression": 1.0,
        "seconds": dense["seconds"],
    }


@local_params()
def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the dense baseline and the variants; write ``recipe_gap.csv``/``.md``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe_gap")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--num-epochs", type=int, default=40, help="the budget E of every run")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-subset", type=int, default=None, help="first N examples")
    parser.add_argument("--validation", type=int, default=VALIDATION, help="held out of train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue cut-off runs")
    parser.add_argument("--out", default="benchmarks/results/recipe-gap")
    args = parser.parse_args(argv)
    if args.num_epochs < 4:
        parser.error("--num-epochs must be at least 4 (a quarter of it is the pretraining)")
    with torch_threads(args.threads):
        device = resolve_device("auto")
        test = load_data(args.data, args.data_dir, device, args.train_subset)
        data = split(test, args.validation)
        out = Path(args.out)
        rows = [dense_row(data, test, args, out)]
        rows += [run_variant(v, data, test, args, out) for v in args.variants]
    table = pd.DataFrame(rows)
    dense = table.iloc[0]
    table["val_gap_points"] = table["val_error_%"] - dense["val_error_%"]
    table["test_gap_points"] = table["test_error_%"] - dense["test_error_%"]
    md = header("Sparse VD's accuracy gap on equal budgets", device, "benchmarks.recipe_gap", argv)
    md += (
        f"{NET} on {args.data}: every run trains {args.num_epochs} epochs in all on the first "
        f"{data.num_train} training images; validation: the last {args.validation}; errors of "
        "the pruned mean net. lr decay from "
        f"{DECAY_START[NET]:.0%} of each part. Variants are chosen on `val_gap_points` only.\n\n"
    )
    md += markdown_table(table) + "\n## Verdicts (validation gap <= +1 point)\n\n"
    for _, row in table.iloc[1:].iterrows():
        held = "within" if row["val_gap_points"] <= 1.0 else "NOT within"
        md += (
            f"- {row['variant']}: validation gap {row['val_gap_points']:+.2f} points, "
            f"{held} +1 point, at {row['compression']:.1f}x\n"
        )
    write_results(out, "recipe_gap", table, md)
    print(md)
    return table


if __name__ == "__main__":
    main()
