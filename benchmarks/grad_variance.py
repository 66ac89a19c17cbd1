"""Variance of the ELBO's stochastic gradient: Kingma, Salimans & Welling (2015), Table 1.

Kingma, Salimans & Welling, "Variational Dropout and the Local Reparameterization Trick",
NeurIPS 2015, Table 1 compares, for an MLP regularized by variational dropout with independent
weight noise ``q(w) = N(theta, alpha theta^2)``, the variance of the minibatch gradient of the
ELBO with respect to the weight means ``theta`` of the top and of the bottom layer, early
(epoch 10) and late (epoch 100) in training, for four estimators:

* ``LRT`` -- the local reparameterization trick: pre-activations are sampled, so the noise is
  independent across the examples of a minibatch (``reparam="lrt"``);
* ``separate weight samples per example`` -- the same law per example, drawn through a weight
  sample per example (``reparam="per_example"``);
* ``single weight sample per minibatch`` -- plain SGVB: one weight draw shared by the whole
  minibatch, so its noise does not average out over the examples (``reparam="shared"``);
* ``no dropout`` -- the same parameters with the noise removed (see below): the variance due to
  the choice of minibatch alone.

Procedure.  ONE model (the registered ``lenet300-loguniform`` entry with the ``vd-layer`` guide,
Kingma's type A, by default) is trained with the LRT by :func:`zoo.fit` (Adam, lr 1e-3,
batch 100, constant lr, full KL weight from the start, as in Kingma et al., i.e. without the
Molchanov et al. warm-up and lr decay of the entry's recipe).  Its parameters are snapshot after
``--early-epoch`` and ``--late-epoch`` epochs.  At each snapshot the parameters are loaded
(state-dict round trip; the layout does not depend on ``reparam``) into a model built with each
estimator's ``reparam``, and ``K = --num-batches`` minibatches of ``B = --batch-size`` examples
are drawn uniformly (without replacement within a minibatch) from the training set.  The SAME
``K`` minibatches serve all four estimators (common random numbers), so the differences between
rows are due to the estimators' noise, not to different minibatches.  For each minibatch ``k``
and estimator the gradient ``g_k = d loss_k / d theta`` of the loss

    loss_k = -[(N / B) sum_{i in batch k} log p(y_i | x_i, w) - KL(q || p)],   w ~ q

is computed by ``TraceMeanField_ELBO.loss_and_grads`` (one particle) on the entry's callables,
exactly the objective :func:`zoo.fit` optimizes (``N`` is the training-set size).  The KL term is
analytic and deterministic given the parameters, so it shifts the gradient but adds no variance.

The reported number, per layer ("bottom": the first weight matrix, "top": the last), is

    V = (1 / |theta|) sum_j  1 / (K - 1) sum_k (g_kj - mean_k g_kj)^2,

the unbiased empirical variance across the ``K`` draws of each weight's gradient, averaged over
the layer's weights.  Both the minibatch choice and the weight noise contribute to it, which is
Kingma's definition ("average empirical variance of minibatch stochastic gradient estimates").
Weights whose gradient is always zero (inputs that are zero in every image) count with variance
zero in every row, so they scale all rows alike and leave the ratios unchanged.  The standard
error of ``V`` is estimated from ``G = min(10, K // 2)`` disjoint groups of draws (the spread of
the per-group estimates divided by ``sqrt(G)``); it ignores the correlation between rows that the
common minibatches create, which makes the comparisons between rows conservative.

"no dropout" is the zoo model with the guide's noise removed: the weights are fixed at ``theta``
(``poutine.condition`` on the model) and the loss is the minibatch negative log-likelihood
``-(N / B) sum_i log p(y_i | x_i, theta)``.  It is evaluated at the parameters of the same
variational-dropout fit (not of a separately trained deterministic network, which would sit at a
different point), so all four rows describe the same parameters; the KL is left out because its
gradient is deterministic.

Absolute values depend on conventions the paper does not fix for this table (the scale of the
objective -- here the sum over the training set, ``N / B`` times the minibatch sum -- the data,
the architecture, the learned dropout rates and the training stage), so compare the ORDERING of
the rows and their RATIOS to the LRT row with the paper's, which this script prints side by side.
The paper's claim is ``LRT < separate < single`` in every column.

Usage::

    python -m benchmarks.grad_variance                                 # Fashion-MNIST, 10/100
    python -m benchmarks.grad_variance --early-epoch 2 --late-epoch 20 --num-batches 100
    python -m benchmarks.grad_variance --data mnist --data-dir ~/data/mnist --guide vd-unit
    python -m benchmarks.grad_variance --data digits --hidden 32 --early-epoch 1 --late-epoch 5
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from pyro import poutine

from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
    write_results,
)
from zoo import TrainConfig, ZooModel, create_model, fit
from zoo.data import Dataset
from zoo.elbo import make_elbo
from zoo.train import resolve_device
from zoo.util import local_params

ENTRY = "lenet300-loguniform"
GUIDES = ("vd-layer", "vd-unit", "sparse-vd")
LAYERS = ("top", "bottom")
#: Row key -> (``reparam`` of the model the gradient is taken through, the paper's row label).
ESTIMATORS: dict[str, tuple[str, str]] = {
    "lrt": ("lrt", "LRT"),
    "per_example": ("per_example", "separate weight samples per example"),
    "shared": ("shared", "single weight sample per minibatch"),
    "no_dropout": ("shared", "no dropout"),
}
#: The claim of the paper: the variance increases down this list.
ORDER = ("lrt", "per_example", "shared")
#: Kingma et al. (2015), Table 1 (/work/shared/ANCHORS.md): (layer, epoch) -> row -> variance.
PAPER_EPOCHS = (10, 100)
PAPER: dict[tuple[str, int], dict[str, float]] = {
    ("top", 10): {"lrt": 7.8e3, "per_example": 1.4e4, "shared": 4.9e4, "no_dropout": 2.8e3},
    ("top", 100): {"lrt": 1.2e3, "per_example": 2.6e3, "shared": 4.3e3, "no_dropout": 5.9e1},
    ("bottom", 10): {"lrt": 1.9e2, "per_example": 4.3e2, "shared": 8.5e2, "no_dropout": 1.3e2},
    ("bottom", 100): {"lrt": 1.1e2, "per_example": 2.5e2, "shared": 3.3e2, "no_dropout": 9.0e0},
}


# --------------------------------------------------------------------------------------------
# Streaming moments


class GroupedMoments:
    """Welford moments of a gradient vector, kept in ``groups`` disjoint groups of draws.

    Float64 and streaming: the ``K`` gradients of the bottom layer (235,200 weights for
    LeNet-300-100) are never held at once.  The groups give a standard error for free.
    """

    def __init__(self, size: int, groups: int, device: torch.device) -> None:
        self.count = [0] * groups
        self.mean = torch.zeros(groups, size, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(groups, size, dtype=torch.float64, device=device)

    def add(self, group: int, value: torch.Tensor) -> None:
        self.count[group] += 1
        value = value.detach().reshape(-1).to(torch.float64)
        delta = value - self.mean[group]
        self.mean[group] += delta / self.count[group]
        self.m2[group] += delta * (value - self.mean[group])

    def result(self) -> tuple[float, float]:
        """``(V, standard error of V)``; ``V`` pools all draws around their grand mean."""
        counts = torch.tensor(self.count, dtype=torch.float64, device=self.mean.device)
        total = counts.sum()
        grand = (counts[:, None] * self.mean).sum(0) / total
        # Chan et al.'s pooling: within-group sums of squares plus the between-group term.
        m2 = self.m2.sum(0) + (counts[:, None] * (self.mean - grand).square()).sum(0)
        variance = (m2 / (total - 1)).mean().item()
        per_group = (self.m2 / (counts[:, None] - 1)).mean(1)
        stderr = (per_group.std() / math.sqrt(len(self.count))).item()
        return variance, stderr


# --------------------------------------------------------------------------------------------
# Gradients


def _thetas(zm: ZooModel) -> dict[str, torch.Tensor]:
    """The weight means of the bottom (first) and top (last) layer, as parameters."""
    sites = list(zm.guide.sites)
    return {"bottom": sites[0].theta, "top": sites[-1].theta}


def _elbo_step(zm: ZooModel) -> Callable[[torch.Tensor, torch.Tensor, int], None]:
    """One-particle ELBO gradient through the entry's callables (its reparam handler)."""
    elbo = make_elbo("meanfield", max_plate_nesting=zm.spec.max_plate_nesting)
    model, guide = zm.callables()

    def step(xb: torch.Tensor, yb: torch.Tensor, num_data: int) -> None:
        elbo.loss_and_grads(model, guide, xb, yb, num_data=num_data)

    return step


def _no_dropout_step(zm: ZooModel) -> Callable[[torch.Tensor, torch.Tensor, int], None]:
    """The gradient of ``-(N/B) sum log p(y|x, theta)``: the model with its weights at ``theta``."""
    weights = {s.site: s.theta for s in zm.guide.sites}
    # Called without the entry's handler, the Bayesian layers multiply by the given tensors,
    # which are the parameters themselves, so the gradient reaches theta.
    model = poutine.condition(zm.model, data=weights)

    def step(xb: torch.Tensor, yb: torch.Tensor, num_data: int) -> None:
        trace = poutine.trace(model).get_trace(xb, yb, num_data=num_data)
        trace.compute_log_prob(site_filter=lambda name, site: name == "obs")
        (-trace.nodes["obs"]["log_prob_sum"]).backward()

    return step


def minibatches(
    num_data: int, batch_size: int, num_batches: int, seed: int, device: torch.device
) -> list[torch.Tensor]:
    """``num_batches`` index sets of ``batch_size`` examples, uniform, no repeats within one."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randperm(num_data, generator=gen)[:batch_size].to(device) for _ in range(num_batches)
    ]


def gradient_variance(
    zm: ZooModel,
    estimator: str,
    data: Dataset,
    batches: Sequence[torch.Tensor],
    *,
    seed: int,
    progress: bool = True,
    desc: str = "",
) -> dict[str, tuple[float, float]]:
    """``{layer: (V, standard error)}`` of the loss gradient w.r.t. ``theta``, see the module doc.

    :param zm: a model built with the estimator's ``reparam``, holding the parameters to probe.
    :param estimator: a key of :data:`ESTIMATORS`.
    :param batches: the minibatches' indices into the training set (shared across estimators).
    :param seed: seeds the weight noise, so each row is reproducible on its own.
    """
    from tqdm.auto import tqdm

    step = _no_dropout_step(zm) if estimator == "no_dropout" else _elbo_step(zm)
    thetas = _thetas(zm)
    params = list(zm.parameters())
    groups = min(10, len(batches) // 2)
    moments = {layer: GroupedMoments(t.numel(), groups, zm.device) for layer, t in thetas.items()}
    x_all, y_all, num_data = data.x_train, data.y_train, data.num_train
    torch.manual_seed(seed)
    for k, idx in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False)):
        for p in params:
            p.grad = None
        step(x_all.index_select(0, idx), y_all.index_select(0, idx), num_data)
        for layer, theta in thetas.items():
            moments[layer].add(k % groups, theta.grad)
    return {layer: m.result() for layer, m in moments.items()}


# --------------------------------------------------------------------------------------------
# Training with snapshots


def clone_state(zm: ZooModel) -> dict[str, Any]:
    """A detached copy of ``zm.state_dict()`` (model and guide), to restore or compare later."""
    return {
        part: {k: v.detach().clone() for k, v in state.items()}
        for part, state in zm.state_dict().items()
    }


def train_with_snapshots(
    zm: ZooModel, data: Dataset, config: TrainConfig, snapshot_epochs: Sequence[int]
) -> tuple[dict[int, dict[str, Any]], pd.DataFrame, float]:
    """Train ``zm`` by :func:`zoo.fit` for ``max(snapshot_epochs)`` epochs in one run.

    :func:`zoo.fit` has no per-epoch callback, and splitting the run into several ``fit`` calls
    would reset Adam's moments and the minibatch order; so the snapshots are taken by a
    ``post_step`` hook on a private copy of the entry's spec (the registry is untouched).

    :returns: ``{epoch: state dict}``, the fit's history and its wall time.
    """
    steps_per_epoch = math.ceil(data.num_train / min(config.batch_size, data.num_train))
    wanted = {e * steps_per_epoch: e for e in snapshot_epochs}
    snapshots: dict[int, dict[str, Any]] = {}
    done = 0
    hooks = zm.spec.hooks
    previous = hooks.post_step

    def snapshot(model: ZooModel) -> None:
        nonlocal done
        if previous is not None:
            previous(model)
        done += 1
        if done in wanted:
            snapshots[wanted[done]] = clone_state(model)

    zm.spec = dataclasses.replace(zm.spec, hooks=dataclasses.replace(hooks, post_step=snapshot))
    try:
        result = fit(zm, data, config=config)
    finally:
        zm.spec = dataclasses.replace(zm.spec, hooks=hooks)
    return snapshots, result.history, result.seconds


# --------------------------------------------------------------------------------------------
# Tables


def _column(layer: str, epoch: int) -> str:
    return f"{layer}@{epoch}"


def _ordering_lines(
    results: dict[tuple[str, int], dict[str, tuple[float, float]]], epochs: Sequence[int]
) -> tuple[list[str], bool]:
    lines, all_held = [], True
    for layer in LAYERS:
        for epoch in epochs:
            cell = results[(layer, epoch)]
            values = [cell[e][0] for e in ORDER]
            held = all(a < b for a, b in itertools.pairwise(values))
            all_held &= held
            # A gap is "clear" when it exceeds twice the combined standard error.
            clear = all(
                cell[b][0] - cell[a][0] > 2 * math.hypot(cell[a][1], cell[b][1])
                for a, b in itertools.pairwise(ORDER)
            )
            lrt = cell["lrt"][0]
            ratios = ", ".join(f"{v / lrt:.2f}" for v in values)
            verdict = "held" if held else "did NOT hold"
            strength = " (each gap > 2 standard errors)" if held and clear else ""
            if held and not clear:
                strength = " (but a gap is within 2 standard errors)"
            nd = cell["no_dropout"][0] / lrt
            lines.append(
                f"- {_column(layer, epoch)}: LRT < separate < single {verdict}{strength}; "
                f"ratios to LRT {ratios}; no dropout {nd:.2f}"
            )
    return lines, all_held


def _paper_ratio(layer: str, paper_epoch: int, estimator: str) -> float:
    cell = PAPER[(layer, paper_epoch)]
    return cell[estimator] / cell["lrt"]


def build_tables(
    results: dict[tuple[str, int], dict[str, tuple[float, float]]], epochs: Sequence[int]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The paper-format table of ``V``, the ratios to LRT beside the paper's, and the SEs (%)."""
    variance_rows, ratio_rows, se_rows = [], [], []
    for key, (_, label) in ESTIMATORS.items():
        variance, ratio, se = {"estimator": label}, {"estimator": label}, {"estimator": label}
        for layer in LAYERS:
            for epoch, paper_epoch in zip(epochs, PAPER_EPOCHS, strict=True):
                col = _column(layer, epoch)
                value, stderr = results[(layer, epoch)][key]
                variance[col] = value
                ratio[col] = value / results[(layer, epoch)]["lrt"][0]
                ratio[f"paper {_column(layer, paper_epoch)}"] = _paper_ratio(
                    layer, paper_epoch, key
                )
                se[col] = 100 * stderr / value if value > 0 else float("nan")
        variance_rows.append(variance)
        ratio_rows.append(ratio)
        se_rows.append(se)
    return pd.DataFrame(variance_rows), pd.DataFrame(ratio_rows), pd.DataFrame(se_rows)


def _sci(frame: pd.DataFrame) -> pd.DataFrame:
    """Variances in the paper's notation (``7.8e+03``)."""
    return frame.apply(lambda c: c.map(lambda v: f"{v:.2e}") if c.name != "estimator" else c)


def _round(frame: pd.DataFrame, digits: int) -> pd.DataFrame:
    return frame.apply(lambda c: c.map(lambda v: f"{v:.{digits}f}") if c.name != "estimator" else c)


# --------------------------------------------------------------------------------------------
# Main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.grad_variance", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, mnist or digits")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[300, 100], help="hidden widths of the MLP"
    )
    parser.add_argument("--guide", choices=GUIDES, default="vd-layer", help="vd-layer: type A")
    parser.add_argument("--early-epoch", type=int, default=10, help="the paper: 10")
    parser.add_argument("--late-epoch", type=int, default=100, help="the paper: 100")
    parser.add_argument("--num-batches", type=int, default=100, help="K gradient draws")
    parser.add_argument("--batch-size", type=int, default=100, help="B, training and probing")
    add_run_arguments(parser)
    return parser


@local_params()
def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the benchmark, write ``grad_variance.csv``/``.md`` and return the variance table."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.early_epoch < args.late_epoch:
        parser.error("need 1 <= --early-epoch < --late-epoch")
    if args.num_batches < 4:
        parser.error("--num-batches must be at least 4 (two groups of two for the error bars)")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.train_subset is not None and args.train_subset < args.batch_size:
        parser.error("--train-subset must be at least --batch-size")

    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")

    with torch_threads(args.threads):
        return _run(args, argv, parser)


def _run(
    args: argparse.Namespace, argv: list[str] | None, parser: argparse.ArgumentParser
) -> pd.DataFrame:
    started = time.perf_counter()
    device = resolve_device(args.device)
    data = load_data(args.data, args.data_dir, device, args.train_subset)
    if data.num_train < args.batch_size:
        parser.error(f"--batch-size {args.batch_size} exceeds the {data.num_train} examples")
    hidden = tuple(args.hidden)
    epochs = (args.early_epoch, args.late_epoch)

    def build(reparam: str) -> ZooModel:
        zm = create_model(
            ENTRY, data=data, guide=args.guide, seed=args.seed, hidden=hidden, reparam=reparam
        )
        return zm.to(device)

    trained = build("lrt")
    config = TrainConfig(
        num_epochs=args.late_epoch,
        batch_size=args.batch_size,
        lr=1e-3,
        device=str(device),
        seed=args.seed,
        eval_every=0,
        progress=args.progress,
    )
    snapshots, history, train_seconds = train_with_snapshots(trained, data, config, epochs)

    probes = {key: build(reparam) for key, (reparam, _) in ESTIMATORS.items()}
    results: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    checkpoints = []
    probe_started = time.perf_counter()
    for i, epoch in enumerate(epochs):
        batches = minibatches(
            data.num_train, args.batch_size, args.num_batches, args.seed + 1000 * (i + 1), device
        )
        per_estimator = {}
        for j, (key, zm) in enumerate(probes.items()):
            zm.load_state_dict(snapshots[epoch])
            per_estimator[key] = gradient_variance(
                zm,
                key,
                data,
                batches,
                seed=args.seed + 1000 * (i + 1) + j,
                progress=args.progress,
                desc=f"epoch {epoch}: {key}",
            )
        for layer in LAYERS:
            results[(layer, epoch)] = {key: v[layer] for key, v in per_estimator.items()}
        checkpoints.append(_checkpoint_summary(probes["lrt"], data, history, epoch))
    probe_seconds = time.perf_counter() - probe_started

    variance, ratios, stderr = build_tables(results, epochs)
    lines, all_held = _ordering_lines(results, epochs)
    md = header(
        "Variance of the ELBO gradient (Kingma, Salimans & Welling 2015, Table 1)",
        device,
        "benchmarks.grad_variance",
        argv,
    )
    md += _settings(args, data, hidden, epochs, train_seconds, probe_seconds, started)
    md += "## Variance of the gradient w.r.t. theta (mean over the layer's weights)\n\n"
    md += markdown_table(_sci(variance)) + "\n"
    md += "## Ratio to LRT, next to the paper's (paper: MNIST, epochs 10 and 100)\n\n"
    md += markdown_table(_round(ratios, 2)) + "\n"
    md += (
        f"## Ordering LRT < separate < single: "
        f"{'held in every column' if all_held else 'did NOT hold in every column'}\n\n"
    )
    md += "\n".join(lines) + "\n\n"
    md += "## Relative standard error of each variance (%)\n\n"
    md += markdown_table(_round(stderr, 1)) + "\n"
    md += "## The trained model at the snapshots (LRT fit)\n\n"
    md += markdown_table(pd.DataFrame(checkpoints)) + "\n"
    md += "## Paper (Kingma et al. 2015, Table 1)\n\n"
    paper = pd.DataFrame(
        [
            {
                "estimator": label,
                **{_column(ly, e): PAPER[(ly, e)][key] for ly in LAYERS for e in PAPER_EPOCHS},
            }
            for key, (_, label) in ESTIMATORS.items()
        ]
    )
    md += markdown_table(_sci(paper))
    write_results(args.out, "grad_variance", variance, md)
    print(md)
    return variance


def _checkpoint_summary(
    zm: ZooModel, data: Dataset, history: pd.DataFrame, epoch: int
) -> dict[str, Any]:
    """Training loss, test accuracy and learned dropout rates of the parameters probed."""
    row: dict[str, Any] = {"epoch": epoch}
    if not history.empty:
        row["train_loss_per_example"] = float(
            history.loc[history["epoch"] == epoch, "loss"].iloc[0]
        )
    metrics = zm.evaluate(data, "test")
    row["test_acc_mean_net"] = metrics.get("acc", float("nan"))
    row["test_acc_mc"] = metrics.get("mc_acc", float("nan"))
    rates = zm.guide.dropout_rates()
    if rates is not None:
        sites = list(rates)
        row["dropout_rate_bottom"] = rates[sites[0]].mean().item()
        row["dropout_rate_top"] = rates[sites[-1]].mean().item()
    return row


def _settings(
    args: argparse.Namespace,
    data: Dataset,
    hidden: tuple[int, ...],
    epochs: tuple[int, int],
    train_seconds: float,
    probe_seconds: float,
    started: float,
) -> str:
    shortened = []
    if epochs != PAPER_EPOCHS:
        shortened.append(
            f"snapshots at epochs {epochs[0]} and {epochs[1]} instead of the paper's 10 and 100 "
            "(training time)"
        )
    if args.data != "mnist":
        shortened.append(f"data {args.data} instead of the paper's MNIST")
    if args.train_subset is not None:
        shortened.append(f"the first {args.train_subset} training examples only")
    return (
        "## Settings\n\n"
        f"- model: `{ENTRY}`, guide `{args.guide}`, MLP hidden widths {list(hidden)}; "
        f"trained once with the LRT by `zoo.fit` (Adam lr 1e-3, batch {args.batch_size}, "
        "constant lr, KL weight 1 from the start)\n"
        f"- data: {args.data}, N = {data.num_train} training examples\n"
        f"- gradient draws: K = {args.num_batches} minibatches of B = {args.batch_size} per "
        "snapshot, the same minibatches for every estimator\n"
        "- number reported: V = mean over the layer's weights theta_j of the unbiased variance "
        "across the K draws of d loss / d theta_j, where loss = -[(N/B) sum_batch "
        "log p(y|x,w) - KL], w ~ q (one sample); 'no dropout': w = theta, KL left out (its "
        "gradient is deterministic). Bottom = first weight matrix, top = last.\n"
        "- compare orderings and ratios, not absolute values: those depend on the objective's "
        "scale, the data, the architecture and the stage of training\n"
        f"- shortened against the paper: {'; '.join(shortened) if shortened else 'nothing'}\n"
        f"- wall time: training {train_seconds:.0f} s, gradient draws {probe_seconds:.0f} s, "
        f"total {time.perf_counter() - started:.0f} s\n\n"
    )


if __name__ == "__main__":
    main()
