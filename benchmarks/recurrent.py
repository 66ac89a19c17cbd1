"""Sparse VD for an LSTM: a row-by-row Fashion-MNIST classifier, Lobacheva et al. (2017).

Each 28x28 image is read as a sequence of 28 rows of 28 pixels by an ``nn.LSTM`` (hidden 128 by
default), and a ``Linear`` maps its last output to the 10 classes.  The script trains

* a dense baseline: that plain ``nn.Module`` in a hand-written PyTorch loop
  (:func:`benchmarks.sparse_vd.train_dense`: cross-entropy, Adam, the same batch, epochs and lr
  schedule);
* sparse VD: the same module made Bayesian by :func:`zoo.from_module` with the log-uniform prior
  and the ``sparse-vd`` guide, trained by :func:`zoo.fit`.  The LSTM's ``weight_ih_l0`` and
  ``weight_hh_l0`` are drawn once per minibatch and shared by the 28 steps (the LRT does not
  apply across time steps, Lobacheva, Chirkova & Vetrov 2017); the head uses the LRT.  The
  recipe is :func:`benchmarks.sparse_vd.paper_recipe`'s: Adam 1e-3, KL weight 0 for the first
  2.5 % of training then linear to 1 at 10 %, linear lr decay over the second half.

It then prunes weights with ``log alpha > 3``, exports the pruned net (a plain ``nn.LSTM`` and
``nn.Linear`` holding the masked means, :func:`zoo.models.bnn.export_pruned`), and reports
test accuracy, sparsity per weight matrix, compression ``|W| / |W != 0|`` of the Bayesian
weights (the biases, point estimates, are not counted), and seconds.  Accuracy is measured on
the exported module, in plain PyTorch.

``--train-subset`` and ``--num-epochs`` shorten the run; ``--warm-start`` starts the guide's
means (and the biases) from the trained dense net.

Usage::

    python -m benchmarks.recurrent --num-epochs 20              # full training set
    python -m benchmarks.recurrent --train-subset 10000 --num-epochs 5 --threads 1
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from torch import nn

from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
    write_results,
)
from benchmarks.sparse_vd import paper_recipe, train_dense, warm_start
from zoo import TrainConfig, fit, from_module
from zoo.models.bnn import export_pruned, layer_report
from zoo.train import resolve_device
from zoo.util import local_params

#: Lobacheva et al. (2017): the sparsity they report for LSTMs (their Table 1, IMDB and AG).
PAPER = "99.5 % sparsity on IMDB sentiment (LSTM 128) with no loss of accuracy"


class RowLSTM(nn.Module):
    """A ``(N, 1, 28, 28)`` image read row by row: ``nn.LSTM(28, hidden)`` over 28 steps, then
    ``nn.Linear(hidden, 10)`` on the last output.

    :param hidden: the LSTM's hidden size.
    :param rows: the image's height (time steps); its width is the LSTM's input size.
    """

    def __init__(self, hidden: int = 128, rows: int = 28, width: int = 28, classes: int = 10):
        super().__init__()
        self.rows, self.width = rows, width
        self.lstm = nn.LSTM(width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.reshape(x.shape[0], self.rows, self.width))
        return self.head(out[:, -1])


@torch.no_grad()
def accuracy(model: nn.Module, data, batch: int = 2000) -> float:
    """Test accuracy in percent of a plain ``nn.Module``."""
    right = 0
    for start in range(0, data.num_test, batch):
        logits = model(data.x_test[start : start + batch])
        right += int((logits.argmax(-1) == data.y_test[start : start + batch]).sum())
    return 100.0 * right / data.num_test


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recurrent", description=__doc__.split("\n")[0]
    )
    add_run_arguments(parser)
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist or mnist")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--num-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--warm-start", action="store_true", help="start from the dense weights")
    parser.add_argument("--eval-every", type=int, default=0, help="test metrics every k epochs")
    return parser


@local_params()
def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the benchmark; write ``recurrent.csv`` and ``recurrent.md`` under ``--out``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.num_epochs < 1 or args.hidden < 1:
        parser.error("--num-epochs and --hidden must be at least 1")
    with torch_threads(args.threads):
        return _run(args, argv)


def _net(args: argparse.Namespace, data) -> RowLSTM:
    rows, width = data.info.input_shape[-2:]
    torch.manual_seed(args.seed)
    return RowLSTM(args.hidden, rows, width, data.info.num_classes)


def train_sparse_vd(args: argparse.Namespace, data, recipe: dict, dense: nn.Module | None):
    """Sparse VD through :func:`zoo.from_module`; returns the model and its fit result."""
    zm = from_module(_net(args, data), data=data, prior="loguniform", guide="sparse-vd")
    if dense is not None:
        warm_start(zm, dense)
    config = TrainConfig(
        **recipe,
        device=str(data.device),
        seed=args.seed,
        progress=args.progress,
        eval_every=args.eval_every,
    )
    return zm, fit(zm, data, config=config)


def _run(args: argparse.Namespace, argv: list[str] | None) -> pd.DataFrame:
    device = resolve_device(args.device)
    data = load_data(args.data, args.data_dir, device, args.train_subset)
    recipe = paper_recipe("lenet300", args.num_epochs, args.batch_size)
    dense = train_dense("row-lstm", data, recipe, args.seed, args.progress, _net(args, data))
    zm, result = train_sparse_vd(args, data, recipe, dense["model"] if args.warm_start else None)
    started = time.perf_counter()
    pruned = export_pruned(zm)
    export_seconds = time.perf_counter() - started
    report = layer_report(zm)
    weights = report[report["kind"].isin(["lstm", "linear"])]
    zoo_metrics = zm.evaluate(data, "test")
    common = {"data": args.data, "train": data.num_train, "epochs": args.num_epochs}
    rows = [
        {
            **common,
            "method": "dense LSTM (PyTorch)",
            "accuracy_%": accuracy(dense["model"], data),
            "sparsity_ih/hh/head_%": "-",
            "compression": 1.0,
            "ms_per_step": dense["ms_per_step"],
            "seconds": dense["seconds"],
        },
        {
            **common,
            "method": "sparse VD LSTM, exported" + (" (warm start)" if args.warm_start else ""),
            "accuracy_%": accuracy(pruned, data),
            "sparsity_ih/hh/head_%": " / ".join(f"{s:.1f}" for s in weights["sparsity_%"]),
            "compression": float(report.iloc[-1]["compression"]),
            "ms_per_step": 1000 * result.seconds / result.steps,
            "seconds": result.seconds,
        },
    ]
    table = pd.DataFrame(rows)
    md = header(
        "Sparse VD for an LSTM: row-by-row Fashion-MNIST (Lobacheva et al. 2017)",
        device,
        "benchmarks.recurrent",
        argv,
    )
    md += markdown_table(table) + "\n"
    md += (
        f"The sparse row's accuracy is the exported plain `nn.LSTM` + `nn.Linear` (masked "
        f"means, exported in {export_seconds:.3f} s); through the zoo the pruned mean net scores "
        f"{100 * zoo_metrics['acc']:.2f} % and the {zm.config.eval_samples}-draw predictive "
        f"{100 * zoo_metrics['mc_acc']:.2f} %.  Compression counts the Bayesian weights (the "
        f"LSTM's input and recurrent matrices and the head); biases stay dense.  Paper: {PAPER}."
        "\n\n## Per weight matrix\n\n"
    )
    md += markdown_table(report)
    write_results(args.out, "recurrent", table, md)
    print(md)
    return table


if __name__ == "__main__":
    main()
