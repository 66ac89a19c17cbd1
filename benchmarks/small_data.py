"""Sparse VD on small data: which training recipe keeps it within 2 points of a plain net?

Issue 21: on a small held-out set (a few thousand examples, tens of features, ten classes) the
zoo's former defaults for a user's net (:func:`zoo.from_module`: 30 epochs, Adam at 1e-3,
the KL switched on over epochs 0-5) gave sparse VD 48.4 % test accuracy where a plain MLP of
the same widths and epochs gave 54.9 %.  This script compares, with the same net (an MLP of
``--hidden`` widths), the same data and the same seeds:

* **plain**: the deterministic MLP in a hand-written PyTorch loop (Adam at 1e-3, batch 100,
  cross-entropy) for the recipe's number of epochs, reported at the epoch of best *validation*
  accuracy (early stopping on the validation split, never the test split) and at its last;
* **sparse VD** (log-uniform prior, ``sparse-vd`` guide, the local reparameterization) through
  :func:`zoo.from_module` and :func:`zoo.fit`, under each candidate recipe of :data:`RECIPES`
  (``zoo-default`` is whatever the zoo's defaults are now; ``old-default`` the former ones);
  its accuracy is that of the pruned posterior-mean net (``log alpha > 3`` zeroed).

Each data set's training split loses a stratified fifth to validation; every model trains on
the rest.  The recipe is *chosen on validation accuracy only*: the one whose
worst gap to the early-stopped plain net, over the data sets (mean over seeds), is smallest.
Test accuracies are reported for every row, but only the chosen recipe's make the verdict.

Data sets (none downloaded): ``synth-10c``, scikit-learn's ``make_classification`` with 4000
points, 40 features, 10 classes and 15 % of the labels replaced at random (built to resemble the
held-out description); ``digits`` (1797 8x8 images, 10 classes); ``breast-cancer`` (569, 30
features, 2 classes); ``wine`` (178, 13 features, 3 classes); ``fashion-2k``, 2000 Fashion-MNIST
training images (and 2000 test images) from ``--data-dir``.  ``fashion-12k`` (12,500 training
images, 10,000 to fit) and ``fashion-60k`` (all 60,000, 48,000 to fit) are not small: they
check the rule where it trains 30 epochs, as the former defaults did.

Usage::

    # the committed run (benchmarks/results/small-data/README.md: split over 3 processes)
    nice -n 5 python -m benchmarks.small_data --threads 1 \\
        --recipes zoo-default old-default pretrain-10-lr-3e-3
    python -m benchmarks.small_data --runs a/small_data.csv b/small_data.csv   # report only
    python -m benchmarks.small_data --datasets digits wine --recipes zoo-default old-default \\
        --seeds 0 --out /tmp/small   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

import zoo
from benchmarks.common import header, markdown_table, torch_threads, write_results
from zoo.data import from_tensors, load
from zoo.train import CollapseWarning

#: Candidate recipes: :func:`zoo.fit` overrides (``fit``) and ``from_module`` options
#: (``model``).  ``zoo-default`` passes none; ``old-default`` is the former
#: ``TRAIN_DEFAULTS`` of :mod:`zoo.models.custom`.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "zoo-default": {"fit": {}, "model": {}},
    "old-default": {
        "fit": {
            "num_epochs": 30,
            "batch_size": 100,
            "lr": 1e-3,
            "kl_warmup_start": 0,
            "kl_warmup_end": 5,
        },
        "model": {},
    },
    "warmup-15": {"fit": {"num_epochs": 30, "kl_warmup_end": 15}, "model": {}},
    "lr-3e-3": {"fit": {"num_epochs": 30, "lr": 3e-3, "kl_warmup_end": 5}, "model": {}},
    "ls2-6": {"fit": {"num_epochs": 30, "kl_warmup_end": 5}, "model": {"init_log_sigma2": -6.0}},
    "pretrain-10": {
        "fit": {"num_epochs": 30, "kl_warmup_start": 10, "kl_warmup_end": 20},
        "model": {},
    },
    "pretrain-10-lr-3e-3": {
        "fit": {"num_epochs": 30, "lr": 3e-3, "kl_warmup_start": 10, "kl_warmup_end": 20},
        "model": {},
    },
    "pretrain-10-wu-30-lr-3e-3": {
        "fit": {"num_epochs": 30, "lr": 3e-3, "kl_warmup_start": 10, "kl_warmup_end": 30},
        "model": {},
    },
    "pretrain-15-wu-30-lr-3e-3": {
        "fit": {"num_epochs": 30, "lr": 3e-3, "kl_warmup_start": 15, "kl_warmup_end": 30},
        "model": {},
    },
    "pretrain-10-lr-3e-3-decay": {
        "fit": {
            "num_epochs": 30,
            "lr": 3e-3,
            "kl_warmup_start": 10,
            "kl_warmup_end": 20,
            "lr_schedule": "linear",
            "lr_decay_start": 0.5,
        },
        "model": {},
    },
    "pretrain-10-lr-1e-2": {
        "fit": {"num_epochs": 30, "lr": 1e-2, "kl_warmup_start": 10, "kl_warmup_end": 20},
        "model": {},
    },
    "e60-pretrain-20-lr-3e-3": {
        "fit": {"num_epochs": 60, "lr": 3e-3, "kl_warmup_start": 20, "kl_warmup_end": 40},
        "model": {},
    },
    "epochs-100": {"fit": {"num_epochs": 100, "kl_warmup_end": 5}, "model": {}},
}


def thirds(
    min_steps: int, lr: float, decay: bool = False, start: float = 1 / 3, end: float = 2 / 3
) -> Callable[[int], dict[str, Any]]:
    """A recipe of at least ``min_steps`` steps (and 30 epochs): the KL off for the first
    ``start`` of the epochs (a third), ramped up until ``end`` of them (two thirds), full
    after."""

    def fit_options(num_train: int) -> dict[str, Any]:
        steps = math.ceil(num_train / BASE_FIT["batch_size"])
        epochs = max(30, math.ceil(min_steps / steps))
        out = {"num_epochs": epochs, "lr": lr, "kl_warmup_start": round(start * epochs)}
        out["kl_warmup_end"] = round(end * epochs)
        if decay:
            out.update(lr_schedule="linear", lr_decay_start=0.5)
        return out

    return fit_options


RECIPES.update(
    {
        "thirds-3000-lr-1e-3": {"fit": thirds(3000, 1e-3), "model": {}},
        "thirds-3000-lr-3e-3": {"fit": thirds(3000, 3e-3), "model": {}},
        "thirds-3000-lr-3e-3-decay": {"fit": thirds(3000, 3e-3, True), "model": {}},
        "thirds-1500-lr-3e-3": {"fit": thirds(1500, 3e-3), "model": {}},
        "thirds-1500-lr-1e-3": {"fit": thirds(1500, 1e-3), "model": {}},
        "ramp-3000-third-to-end": {"fit": thirds(3000, 1e-3, end=1.0), "model": {}},
        "ramp-3000-half-to-end": {"fit": thirds(3000, 1e-3, start=0.5, end=1.0), "model": {}},
    }
)

#: Recipe options every run shares unless the recipe sets them.
BASE_FIT = {"batch_size": 100, "lr": 1e-3}
#: The target: sparse VD's test accuracy at most this many points below the plain net's.
TARGET_POINTS = 2.0
DATASETS = ("synth-10c", "digits", "breast-cancer", "wine", "fashion-2k")
#: Not small: 10,000 and 48,000 images to fit, where the rule trains 30 epochs.
LARGER = ("fashion-12k", "fashion-60k")


def _split(
    x: np.ndarray, y: np.ndarray, test: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test, stratify=y, random_state=seed)


def make_dataset(name: str, data_dir: str | None) -> dict[str, np.ndarray]:
    """``name``'s splits as float32 inputs and int64 labels: ``x_fit, y_fit`` (training),
    ``x_val, y_val`` (validation, carved from training), ``x_test, y_test``; tabular inputs are
    standardized with the training split's mean and spread."""
    from sklearn import datasets

    if name.startswith("fashion-"):
        full = load("fashion-mnist", data_dir=data_dir)
        gen = torch.Generator().manual_seed(0)
        size = {"fashion-2k": 2000, "fashion-12k": 12500, "fashion-60k": 60000}[name]
        train = torch.randperm(len(full.y_train), generator=gen)[:size]
        test = torch.randperm(len(full.y_test), generator=gen)[:2000]
        x_tr, y_tr = full.x_train[train].flatten(1).numpy(), full.y_train[train].numpy()
        x_te, y_te = full.x_test[test].flatten(1).numpy(), full.y_test[test].numpy()
    else:
        if name == "synth-10c":
            x, y = datasets.make_classification(
                n_samples=4000,
                n_features=40,
                n_informative=20,
                n_redundant=10,
                n_classes=10,
                n_clusters_per_class=2,
                flip_y=0.15,
                class_sep=1.0,
                random_state=0,
            )
        elif name in ("digits", "breast-cancer", "wine"):
            loader = {
                "digits": datasets.load_digits,
                "breast-cancer": datasets.load_breast_cancer,
                "wine": datasets.load_wine,
            }[name]
            x, y = loader(return_X_y=True)
        else:
            raise ValueError(f"unknown data set {name!r}; choose from {DATASETS + LARGER}")
        x_tr, x_te, y_tr, y_te = _split(x, y, 0.25, seed=0)
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    x_fit, x_val, y_fit, y_val = _split(x_tr, y_tr, 0.2, seed=1)
    out = {"x_fit": x_fit, "y_fit": y_fit, "x_val": x_val, "y_val": y_val}
    out.update(x_test=x_te, y_test=y_te)
    return {
        k: torch.as_tensor(v, dtype=torch.float32 if k[0] == "x" else torch.int64)
        for k, v in out.items()
    }


def make_mlp(inputs: int, hidden: tuple[int, ...], classes: int) -> nn.Sequential:
    """``Linear -> ReLU`` per hidden width, then a ``Linear`` to the class logits."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, classes))


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean())


def train_plain(
    factory: Callable[[], nn.Module], d: dict[str, torch.Tensor], epochs: int, seed: int
) -> dict[str, float]:
    """The deterministic net by Adam (lr 1e-3, batch 100): test accuracy at the epoch of best
    validation accuracy (``test_acc``) and at the last epoch (``last_test_acc``)."""
    torch.manual_seed(seed)
    net = factory()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    n = len(d["y_fit"])
    best = (-1.0, 0, None)
    for epoch in range(1, epochs + 1):
        net.train()
        for idx in torch.randperm(n, generator=gen).split(BASE_FIT["batch_size"]):
            opt.zero_grad()
            nn.functional.cross_entropy(net(d["x_fit"][idx]), d["y_fit"][idx]).backward()
            opt.step()
        net.eval()
        val = _accuracy(net, d["x_val"], d["y_val"])
        if val > best[0]:
            best = (val, epoch, copy.deepcopy(net.state_dict()))
    last = _accuracy(net, d["x_test"], d["y_test"])
    net.load_state_dict(best[2])
    return {
        "val_acc": best[0],
        "test_acc": _accuracy(net, d["x_test"], d["y_test"]),
        "last_test_acc": last,
        "best_epoch": best[1],
        "sparsity": 0.0,
    }


def train_sparse_vd(
    factory: Callable[[], nn.Module], d: dict[str, torch.Tensor], recipe: str, seed: int
) -> dict[str, float]:
    """Sparse VD by :func:`zoo.from_module` and :func:`zoo.fit` under ``recipe``: accuracy of
    the pruned mean net on the validation and test splits, and the sparsity."""
    data = from_tensors(d["x_fit"], d["y_fit"], x_test=d["x_val"], y_test=d["y_val"])
    spec = RECIPES[recipe]
    fit_options = spec["fit"](len(d["y_fit"])) if callable(spec["fit"]) else spec["fit"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)  # a collapse shows in the numbers
        zm = zoo.from_module(
            factory,
            data=data,
            prior="loguniform",
            guide="sparse-vd",
            name=recipe,
            seed=seed,
            **spec["model"],
        )
        result = zoo.fit(
            zm, data, progress=False, eval_every=0, seed=seed, device="cpu", **fit_options
        )
    val = zm.evaluate(data)
    test = zm.evaluate(d["x_test"], y=d["y_test"])
    return {
        "val_acc": val["acc"],
        "test_acc": test["acc"],
        "last_test_acc": test["acc"],
        "mc_test_acc": test["mc_acc"],
        "sparsity": test["sparsity"],
        "epochs": int(result.history["epoch"].iloc[-1]),
    }


def run_dataset(
    name: str, d: dict[str, torch.Tensor], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every (recipe, seed) run on one data set, then the plain net for each number of epochs
    the recipes trained for, with the same seeds."""
    classes = int(max(d["y_fit"].max(), d["y_test"].max())) + 1
    inputs, hidden = d["x_fit"].shape[1], tuple(args.hidden)

    def factory() -> nn.Module:
        return make_mlp(inputs, hidden, classes)

    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for recipe in args.recipes:
            started = time.perf_counter()
            row = train_sparse_vd(factory, d, recipe, seed)
            row["seconds"] = time.perf_counter() - started
            rows.append(
                {"dataset": name, "method": "sparse-vd", "recipe": recipe, "seed": seed, **row}
            )
            if args.progress:
                print(
                    f"{name} {recipe} seed {seed}: val {row['val_acc']:.3f} "
                    f"test {row['test_acc']:.3f} sparsity {row['sparsity']:.3f}",
                    flush=True,
                )
        for epochs in sorted({r["epochs"] for r in rows if r["method"] == "sparse-vd"}):
            started = time.perf_counter()
            row = train_plain(factory, d, epochs, seed)
            row["seconds"] = time.perf_counter() - started
            rows.append(
                {
                    "dataset": name,
                    "method": "plain",
                    "recipe": f"plain-{epochs}",
                    "seed": seed,
                    "epochs": epochs,
                    **row,
                }
            )
            if args.progress:
                print(
                    f"{name} plain-{epochs} seed {seed}: val {row['val_acc']:.3f} "
                    f"test {row['test_acc']:.3f} (last {row['last_test_acc']:.3f})",
                    flush=True,
                )
    return rows


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per data set and sparse-VD recipe: mean and spread over seeds of validation and test
    accuracy and sparsity, and the gaps (points) to the early-stopped plain net of the same
    epochs and seeds."""
    plain = runs[runs["method"] == "plain"]
    rows = []
    svd = runs[runs["method"] == "sparse-vd"]
    for (name, recipe), group in svd.groupby(["dataset", "recipe"], sort=False):
        epochs = int(group["epochs"].iloc[0])
        base = plain[(plain["dataset"] == name) & (plain["epochs"] == epochs)]
        base = base[base["seed"].isin(group["seed"])]
        rows.append(
            {
                "dataset": name,
                "recipe": recipe,
                "epochs": epochs,
                "seeds": len(group),
                "val_acc": group["val_acc"].mean(),
                "test_acc": group["test_acc"].mean(),
                "test_acc_sd": group["test_acc"].std(ddof=0),
                "sparsity": group["sparsity"].mean(),
                "sparsity_sd": group["sparsity"].std(ddof=0),
                "plain_val_acc": base["val_acc"].mean(),
                "plain_test_acc": base["test_acc"].mean(),
                "plain_test_acc_sd": base["test_acc"].std(ddof=0),
                "plain_last_test_acc": base["last_test_acc"].mean(),
                "val_gap": 100 * (group["val_acc"].mean() - base["val_acc"].mean()),
                "test_gap": 100 * (group["test_acc"].mean() - base["test_acc"].mean()),
            }
        )
    return pd.DataFrame(rows)


def choose_recipe(summary: pd.DataFrame) -> str:
    """The recipe whose worst validation gap over the data sets is smallest (ties: the larger
    mean sparsity).  Test accuracies play no part."""
    by = summary.groupby("recipe").agg(worst=("val_gap", "min"), sparsity=("sparsity", "mean"))
    return str(by.sort_values(["worst", "sparsity"], ascending=False).index[0])


def verdicts(summary: pd.DataFrame, recipe: str) -> list[str]:
    """One line per data set: ``recipe``'s test gap to the plain net, met or missed."""
    lines = []
    for row in summary[summary["recipe"] == recipe].itertuples():
        met = "met" if row.test_gap >= -TARGET_POINTS else "missed"
        lines.append(
            f"- {row.dataset}: {recipe} {100 * row.test_acc:.1f} % vs plain "
            f"{100 * row.plain_test_acc:.1f} %, gap {row.test_gap:+.1f} points "
            f"(within {TARGET_POINTS:g}: {met}), sparsity {100 * row.sparsity:.1f} %"
        )
    return lines


def _table(summary: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            "data set": summary["dataset"],
            "recipe": summary["recipe"],
            "epochs": summary["epochs"],
            "val acc %": (100 * summary["val_acc"]).round(1),
            "test acc %": [
                f"{100 * m:.1f} ± {100 * s:.1f}"
                for m, s in zip(summary["test_acc"], summary["test_acc_sd"], strict=True)
            ],
            "sparsity %": [
                f"{100 * m:.1f} ± {100 * s:.1f}"
                for m, s in zip(summary["sparsity"], summary["sparsity_sd"], strict=True)
            ],
            "plain val %": (100 * summary["plain_val_acc"]).round(1),
            "plain test %": [
                f"{100 * m:.1f} ± {100 * s:.1f}"
                for m, s in zip(
                    summary["plain_test_acc"], summary["plain_test_acc_sd"], strict=True
                )
            ],
            "plain last %": (100 * summary["plain_last_test_acc"]).round(1),
            "val gap": summary["val_gap"].round(1),
            "test gap": summary["test_gap"].round(1),
        }
    )
    return markdown_table(shown)


def report(summary: pd.DataFrame, args: argparse.Namespace, argv: list[str] | None) -> str:
    """The Markdown page: header, the data sets, the table, the chosen recipe, the verdicts."""
    chosen = choose_recipe(summary)
    sizes = "\n".join(f"- {name}: {text}" for name, text in args.sizes.items())
    lines = [
        header("Sparse VD on small data against a plain net", "cpu", "benchmarks.small_data", argv),
        f"MLP widths {tuple(args.hidden)}, seeds {args.seeds}; accuracies are means over "
        "seeds ± their spread (population sd); sparse VD's is the pruned mean net's. The "
        "plain net is early-stopped on the validation split ('plain last': its last epoch). "
        "Gaps are sparse VD minus plain, in points. zoo-default: fit's defaults for a user's "
        "net as they are at the run (this release: `zoo.models.custom.train_defaults_for_data` "
        "for sparse VD); old-default: the former ones (30 epochs, KL ramped over epochs 0-5).\n",
        "## Data sets (fit / validation / test examples, features, classes)\n",
        sizes + "\n",
        "## Results\n",
        _table(summary) + "\n",
        "## Choice (validation only)\n",
        f"The recipe with the smallest worst validation gap over the data sets: **{chosen}**.\n",
        f"## Verdict: {chosen}, test split (target: within {TARGET_POINTS:g} points)\n",
        *verdicts(summary, chosen),
    ]
    if chosen != "zoo-default" and "zoo-default" in set(summary["recipe"]):
        lines += ["", "## Verdict: zoo-default, test split\n", *verdicts(summary, "zoo-default")]
    return "\n".join(lines) + "\n"


def _load(name: str, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    d = make_dataset(name, args.data_dir)
    if args.fit_subset is not None:
        d["x_fit"], d["y_fit"] = d["x_fit"][: args.fit_subset], d["y_fit"][: args.fit_subset]
    classes = int(max(d["y_fit"].max(), d["y_test"].max())) + 1
    args.sizes[name] = (
        f"{len(d['y_fit'])} / {len(d['y_val'])} / {len(d['y_test'])}, "
        f"{d['x_fit'].shape[1]} features, {classes} classes"
    )
    return d


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run every recipe and the plain net on every data set (or read the runs of earlier
    invocations, ``--runs``); write ``small_data.csv`` (one row per run), ``summary.csv`` and
    ``small_data.md``.  Returns the summary."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.small_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=(*DATASETS, *LARGER)
    )
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--fit-subset", type=int, default=None, help="first N fit examples")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=None,
        help="report the runs these small_data.csv files hold (e.g. of runs split over "
        "processes) instead of training",
    )
    parser.add_argument("--out", default="benchmarks/results/small-data")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    args.sizes = {}
    if args.runs is not None:
        runs = pd.concat([pd.read_csv(path) for path in args.runs], ignore_index=True)
        args.seeds = sorted(runs["seed"].unique().tolist())
        for name in runs["dataset"].unique():
            _load(name, args)
    else:
        rows = []
        with torch_threads(args.threads):
            for name in args.datasets:
                rows += run_dataset(name, _load(name, args), args)
        runs = pd.DataFrame(rows)
    summary = summarize(runs)
    out = Path(args.out)
    write_results(out, "small_data", runs, report(summary, args, argv))
    summary.to_csv(out / "summary.csv", index=False)
    return summary


if __name__ == "__main__":
    main()
