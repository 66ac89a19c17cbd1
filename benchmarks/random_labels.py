"""Random labels: does SparseVD refuse to memorize them while a dense net with dropout fits them?

Zhang, Bengio, Hardt, Recht & Vinyals (2017), "Understanding deep learning requires rethinking
generalization", ICLR, showed that networks fit randomly shuffled labels; the SparseVD poster
(Molchanov, Ashukha & Vetrov 2017, ICML) reports on MNIST with a fully connected net

============== ========= ======== ========
method         train acc test acc sparsity
============== ========= ======== ========
binary dropout 100 %     10 %     --
SparseVD       10 %      10 %     100 %
============== ========= ======== ========

because the KL to the log-uniform prior removes every weight that explains no signal.  This
script checks that claim rather than assuming it.  It shuffles the training labels of
``--data`` (a permutation, so the class frequencies stay those of the data) and trains, with the
same architecture (``mlp`` of ``--hidden``), epochs, batch, Adam lr and lr schedule:

* **dense + binary dropout**: the plain :func:`zoo.models.bnn.build_net` network with
  ``nn.Dropout`` before every linear layer (``--input-dropout`` before the first,
  ``--dropout`` before the others), in the plain PyTorch loop of
  :func:`benchmarks.sparse_vd.train_dense`, cross-entropy;
* **SparseVD**: the registered ``lenet300-loguniform`` entry (its ``hidden`` overridden) with
  the ``sparse-vd`` guide and the local reparameterization, trained by :func:`zoo.fit` with the
  KL weight ramped from 0 at 2.5 % to 1 at 10 % of training (Molchanov et al.'s epochs 5-20 of
  200).

Every ``--eval-every`` epochs it records the accuracy on the shuffled training labels and on
the true test labels (dense: dropout off; SparseVD: the pruned posterior-mean net,
``log alpha > 3`` zeroed) and the sparsity.  Chance is the largest class frequency.

Usage::

    python -m benchmarks.random_labels                        # 5000 Fashion-MNIST images
    python -m benchmarks.random_labels --train-subset 2000 --num-epochs 500 \\
        --input-dropout 0 --dropout 0.2                      # the dense net memorizes (100 %)
    python -m benchmarks.random_labels --data digits --hidden 100 --num-epochs 30
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchmarks import sparse_vd
from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
    write_results,
)
from zoo import TrainConfig, create_model, fit
from zoo.data import Dataset
from zoo.evaluate import mean_net
from zoo.models.bnn import build_net, layer_report
from zoo.train import CollapseWarning, resolve_device
from zoo.util import local_params

#: The poster's numbers (MNIST, fully connected net).
POSTER = [
    {"method": "binary dropout", "train_acc_%": 100.0, "test_acc_%": 10.0, "sparsity_%": "-"},
    {"method": "SparseVD", "train_acc_%": 10.0, "test_acc_%": 10.0, "sparsity_%": 100.0},
]
#: What the verdict calls memorized, and how far above chance "at chance" may be.
MEMORIZED = 0.95
CHANCE_MARGIN = 0.05


def shuffle_labels(data: Dataset, seed: int) -> Dataset:
    """``data`` with its training labels permuted by ``seed`` (test labels kept true)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(data.num_train, generator=gen).to(data.device)
    return dataclasses.replace(
        data,
        y_train=data.y_train[perm],
        source={**data.source, "train_labels": f"shuffled (seed {seed})"},
    )


def dropout_net(net: nn.Sequential, p_input: float, p_hidden: float) -> nn.Sequential:
    """``net`` (an ``mlp`` of :func:`~zoo.models.bnn.build_net`) with ``nn.Dropout`` before each
    linear layer: rate ``p_input`` before the first, ``p_hidden`` before the others."""
    layers: list[nn.Module] = []
    first = True
    for module in net:
        if isinstance(module, nn.Linear):
            layers.append(nn.Dropout(p_input if first else p_hidden))
            first = False
        layers.append(module)
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> float:
    """Top-1 accuracy of a deterministic net (call it in eval mode)."""
    right = 0
    for start in range(0, x.shape[0], batch):
        right += int((net(x[start : start + batch]).argmax(-1) == y[start : start + batch]).sum())
    return right / x.shape[0]


def _recipe(args: argparse.Namespace) -> dict:
    num_epochs = args.num_epochs
    return {
        "num_epochs": num_epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "lr_decay_start": 0.5,
        "kl_warmup_start": 5 / 200 * num_epochs,
        "kl_warmup_end": 20 / 200 * num_epochs,
    }


def _due(epoch: int, args: argparse.Namespace) -> bool:
    return epoch % args.eval_every == 0 or epoch == args.num_epochs or epoch == 1


def train_dense(
    data: Dataset, args: argparse.Namespace, record: Callable[[int, nn.Module], None]
) -> float:
    """The dense net with binary dropout, trained by :func:`benchmarks.sparse_vd.train_dense`
    (plain PyTorch); ``record(epoch, net)`` at the evaluation epochs.  Returns the training
    seconds (evaluation excluded)."""
    torch.manual_seed(args.seed)
    config = create_model("lenet300-loguniform", data=data, hidden=tuple(args.hidden)).config
    net = dropout_net(build_net(config, data.info), args.input_dropout, args.dropout)

    def on_epoch(epoch: int, model: nn.Module) -> None:
        if _due(epoch, args):
            record(epoch, model)

    result = sparse_vd.train_dense(
        "lenet300", data, _recipe(args), args.seed, args.progress, model=net, on_epoch=on_epoch
    )
    return result["seconds"]


def train_sparse_vd(
    data: Dataset, args: argparse.Namespace, record: Callable[[int, nn.Module, float], None]
) -> float:
    """SparseVD through :func:`zoo.fit`; ``record(epoch, pruned_mean_net, sparsity)`` at the
    evaluation epochs.  Returns the training seconds (evaluation excluded)."""
    zm = create_model(
        "lenet300-loguniform",
        data=data,
        guide="sparse-vd",
        seed=args.seed,
        hidden=tuple(args.hidden),
    )
    epoch = 0
    eval_seconds = 0.0

    def on_epoch(zm) -> dict[str, float]:
        nonlocal epoch, eval_seconds
        epoch += 1
        if _due(epoch, args):
            started = time.perf_counter()
            sparsity = float(layer_report(zm).iloc[-1]["sparsity_%"]) / 100
            record(epoch, mean_net(zm), sparsity)
            eval_seconds += time.perf_counter() - started
        return {}

    config = TrainConfig(
        **_recipe(args),
        device=str(data.device),
        seed=args.seed,
        progress=args.progress,
        eval_every=0,
    )
    with warnings.catch_warnings():
        # Random labels hold nothing to learn: pruning every weight at chance accuracy is the
        # result this benchmark shows (Molchanov et al. 2017, section 5.3), not a collapse.
        warnings.simplefilter("ignore", CollapseWarning)
        result = fit(zm, data, config=config, on_epoch=on_epoch)
    return result.seconds - eval_seconds


@local_params()
def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run both nets and write ``random_labels.csv`` (per epoch), ``random_labels.md`` (the
    poster's table, the curves, the verdict) and ``random_labels.png``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.random_labels", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, mnist or digits")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--hidden", type=int, nargs="+", default=[300, 100])
    parser.add_argument("--num-epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--lr-schedule",
        choices=("linear", "constant"),
        default="linear",
        help="linear: decay to 0 over the second half (Molchanov et al.)",
    )
    parser.add_argument("--dropout", type=float, default=0.5, help="dense net, hidden layers")
    parser.add_argument("--input-dropout", type=float, default=0.2, help="dense net, inputs")
    parser.add_argument("--eval-every", type=int, default=10, help="epochs between metrics")
    parser.add_argument("--test-subset", type=int, default=None, help="first N test images")
    parser.add_argument("--label-seed", type=int, default=0, help="seed of the label shuffle")
    add_run_arguments(parser)
    parser.set_defaults(train_subset=5000)
    args = parser.parse_args(argv)
    if args.num_epochs < 1 or args.eval_every < 1:
        parser.error("--num-epochs and --eval-every must be at least 1")
    for name in ("dropout", "input_dropout"):
        if not 0 <= getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must lie in [0, 1)")
    with torch_threads(args.threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> pd.DataFrame:
    device = resolve_device(args.device)
    data = shuffle_labels(
        load_data(args.data, args.data_dir, device, args.train_subset), args.label_seed
    )
    if args.test_subset is not None:
        data = dataclasses.replace(
            data, x_test=data.x_test[: args.test_subset], y_test=data.y_test[: args.test_subset]
        )
    if data.info.task != "classification":
        raise ValueError(f"{args.data} is not a classification data set")
    chance = torch.bincount(data.y_train, minlength=data.info.num_classes).max().item()
    chance /= data.num_train
    rows: list[dict] = []

    def row(method: str, epoch: int, net: nn.Module, sparsity: float) -> None:
        rows.append(
            {
                "method": method,
                "epoch": epoch,
                "train_acc": accuracy(net, data.x_train, data.y_train),
                "test_acc": accuracy(net, data.x_test, data.y_test),
                "sparsity": sparsity,
            }
        )

    seconds = {
        "dense + binary dropout": train_dense(
            data, args, lambda e, net: row("dense + binary dropout", e, net, 0.0)
        ),
        "SparseVD": train_sparse_vd(data, args, lambda e, net, s: row("SparseVD", e, net, s)),
    }
    curves = pd.DataFrame(rows)
    out = Path(args.out)
    md = header(
        "Random labels: SparseVD against a dense net with dropout",
        device,
        "benchmarks.random_labels",
        argv,
    )
    md += _settings(args, data, chance, seconds)
    md += "## Poster format (last epoch)\n\n" + markdown_table(_final(curves)) + "\n"
    md += "## Verdict\n\n" + _verdict(curves, chance) + "\n"
    md += "## Poster (MNIST, fully connected net)\n\n" + markdown_table(pd.DataFrame(POSTER))
    md += "\n## Against epochs\n\n" + markdown_table(_percent(curves)) + "\n"
    write_results(out, "random_labels", curves, md)
    _plot(curves, chance, out / "random_labels.png")
    print(md)
    return curves


def _settings(args, data: Dataset, chance: float, seconds: dict[str, float]) -> str:
    layers = " - ".join(map(str, [data.info.input_dim, *args.hidden, data.info.num_classes]))
    schedule = (
        "linear lr decay to 0 over the second half"
        if args.lr_schedule == "linear"
        else "constant lr"
    )
    return (
        "## Settings\n\n"
        f"- data: {args.data}, the first {data.num_train} training images with labels shuffled "
        f"(seed {args.label_seed}); accuracy on the true labels of {data.num_test} test images\n"
        f"- net: fully connected {layers}, ReLU\n"
        f"- budget for both: {args.num_epochs} epochs, batch {args.batch_size}, Adam lr "
        f"{args.lr:g}, {schedule}\n"
        f"- dense: dropout {args.input_dropout:g} on the inputs, {args.dropout:g} on the hidden "
        "units; evaluated with dropout off\n"
        "- SparseVD: `lenet300-loguniform` with `sparse-vd`, LRT, KL weight 0 until "
        f"{5 / 200 * args.num_epochs:g} epochs then linear to 1 at {20 / 200 * args.num_epochs:g};"
        " evaluated with the pruned posterior means (log alpha > 3 zeroed)\n"
        f"- chance (largest class frequency of the shuffled labels): {100 * chance:.1f}%\n"
        "- training seconds (evaluation excluded): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + "\n\n"
    )


def _percent(curves: pd.DataFrame) -> pd.DataFrame:
    table = curves.copy()
    for col in ("train_acc", "test_acc", "sparsity"):
        table[f"{col}_%"] = (100 * table.pop(col)).round(2)
    return table


def _final(curves: pd.DataFrame) -> pd.DataFrame:
    last = curves.groupby("method", sort=False).tail(1)
    table = _percent(last).drop(columns="epoch")
    table["sparsity_%"] = table["sparsity_%"].astype(object)
    table.loc[table["method"] != "SparseVD", "sparsity_%"] = "-"
    return table.reset_index(drop=True)


def _verdict(curves: pd.DataFrame, chance: float) -> str:
    """Each expectation met or not, with the measured number."""
    last = curves.groupby("method", sort=False).tail(1).set_index("method")
    dense, svd = last.loc["dense + binary dropout"], last.loc["SparseVD"]
    lines = []
    ok = dense["train_acc"] >= MEMORIZED
    lines.append(
        f"- dense + binary dropout memorizes (train acc >= {100 * MEMORIZED:.0f}%): "
        + ("met" if ok else "NOT met")
        + f", {100 * dense['train_acc']:.1f}% train, {100 * dense['test_acc']:.1f}% test"
    )
    ok = svd["train_acc"] <= chance + CHANCE_MARGIN
    lines.append(
        f"- SparseVD stays at chance (train acc <= chance + {100 * CHANCE_MARGIN:.0f} points = "
        f"{100 * (chance + CHANCE_MARGIN):.1f}%): "
        + ("met" if ok else "NOT met")
        + f", {100 * svd['train_acc']:.1f}% train, {100 * svd['test_acc']:.1f}% test"
    )
    ok = svd["sparsity"] >= 0.99
    lines.append(
        "- SparseVD sparsity -> 100% (>= 99%): "
        + ("met" if ok else "NOT met")
        + f", {100 * svd['sparsity']:.2f}%"
    )
    return "\n".join(lines) + "\n"


def _plot(curves: pd.DataFrame, chance: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, sparse) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, group in curves.groupby("method", sort=False):
        line = acc.plot(
            group["epoch"], 100 * group["train_acc"], marker=".", label=f"{method} train"
        )
        acc.plot(
            group["epoch"],
            100 * group["test_acc"],
            linestyle="--",
            color=line[0].get_color(),
            label=f"{method} test",
        )
        sparse.plot(group["epoch"], 100 * group["sparsity"], marker=".", label=method)
    acc.axhline(100 * chance, color="grey", linewidth=1, linestyle=":", label="chance")
    acc.set_xlabel("epoch")
    acc.set_ylabel("accuracy on the shuffled train / true test labels (%)")
    acc.set_ylim(0, 100)
    acc.legend(fontsize=8)
    sparse.set_xlabel("epoch")
    sparse.set_ylabel("weights pruned (%)")
    sparse.set_ylim(0, 100)
    sparse.legend(fontsize=8)
    fig.suptitle("Random labels")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
