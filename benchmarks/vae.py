"""The VAE's gradient estimators: learning curves and the variance of the encoder's gradient.

Kingma & Welling (2014) train the VAE with the reparameterized gradient; the score function
(REINFORCE, Williams 1992) is the estimator that works for any ``q``, and baselines are its
standard control variates (Mnih & Gregor 2014).  This script trains the same registered VAE
(``vae-fashion`` by default, Fashion-MNIST, dynamic binarization) once per estimator and
reports:

* **learning curves**: the training loss, the test ELBO and the importance-weighted bound of
  Burda, Grosse & Salakhutdinov (2016) with ``k = --iwae-k`` after every epoch, on the first
  ``--eval-subset`` test images (binarized once, by a fixed seed), and the wall time of each
  epoch's training;
* **the final bound** with ``k = --final-k`` (5000 in the IWAE paper) on the first
  ``--final-subset`` test images;
* **the variance of the encoder's gradient at fixed parameters**: at the initial parameters and
  at those of the reparameterized run's end, every estimator draws ``--var-draws`` gradients
  ``d ELBO / d phi`` of one fixed minibatch of ``--batch-size`` training images (binarized
  once), so only the estimator's own noise varies.  ``V`` is the variance of each encoder
  parameter's gradient across the draws, averaged over the parameters, with a standard error
  from 10 disjoint groups of draws.  The baselines are first fitted at those parameters:
  ``--var-warmup`` random minibatches advance the moving average, and the neural baseline takes
  as many Adam steps on its own weights, encoder and decoder held fixed; both baselines are then
  held fixed during the draws (the moving average would otherwise learn the one batch example
  by example, which training never lets it do).  The mean gradient of each estimator is
  compared with the reparameterized one's: all estimate the same gradient, so the distance
  between the means should be of the size the noise alone explains,
  ``sqrt(sum_j (var_j + var_ref_j) / K)``.

The objective is :func:`zoo.fit`'s, ``(N / B) sum_batch log p(x | z) - KL``, so absolute
variances scale with ``N``; compare the ratios.

Usage::

    python -m benchmarks.vae                                   # Fashion-MNIST, 4 estimators
    python -m benchmarks.vae --num-epochs 3 --iwae-k 100 --threads 1
    python -m benchmarks.vae --data mnist --data-dir ~/data/mnist --final-k 5000
    python -m benchmarks.vae --data digits --entry vae-digits --num-epochs 2   # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any

import pandas as pd
import torch

from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
    write_results,
)
from benchmarks.grad_variance import GroupedMoments, clone_state
from guides.amortized import (
    ESTIMATORS,
    frozen_average_baseline,
    reset_average_baseline,
    resize_average_baseline,
)
from zoo import TrainConfig, ZooModel, create_model, fit, get_spec
from zoo.data import Dataset
from zoo.elbo import make_elbo
from zoo.models.vae import (
    elbo_per_example,
    encoder_gradients,
    iwae_log_likelihood,
    prepare_eval_data,
)
from zoo.spec import resolve_elbo
from zoo.train import resolve_device
from zoo.util import local_params

LABELS = {
    "reparam": "reparameterized (Trace_ELBO)",
    "score": "score function, no baseline",
    "score-avg": "score function, decaying-average baseline",
    "score-nn": "score function, average + neural baseline",
}


# --------------------------------------------------------------------------------------------
# Gradient variance at fixed parameters


def _load(zm: ZooModel, state: dict[str, Any]) -> None:
    """Load model and encoder; a neural baseline absent from ``state`` keeps its own weights."""
    zm.model.load_state_dict(state["model"])
    result = zm.guide.load_state_dict(state["guide"], strict=False)
    if result.unexpected_keys or any(not k.startswith("baseline.") for k in result.missing_keys):
        raise ValueError(f"state does not fit {zm.name}'s guide: {result}")


def fit_baselines(zm: ZooModel, data: Dataset, steps: int, batch_size: int, lr: float) -> None:
    """Advance the moving average and fit the neural baseline at ``zm``'s fixed parameters.

    Only the baseline network's weights are stepped (Adam); the encoder's and decoder's
    gradients are computed by the ELBO and discarded.
    """
    if zm.config.estimator not in ("score-avg", "score-nn") or steps == 0:
        return
    elbo = make_elbo(resolve_elbo(zm, TrainConfig()), max_plate_nesting=1)
    model, guide = zm.callables()
    baseline = [] if zm.guide.baseline is None else list(zm.guide.baseline.parameters())
    optimizer = torch.optim.Adam(baseline, lr=lr) if baseline else None
    params = list(zm.parameters())
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randperm(data.num_train, generator=gen)[:batch_size].to(data.device)
        x = prepare_eval_data(zm, data.x_train.index_select(0, idx))
        resize_average_baseline(x.shape[0], zm.guide.site)
        for p in params:
            p.grad = None
        elbo.loss_and_grads(model, guide, x, None, num_data=data.num_train)
        if optimizer is not None:
            optimizer.step()
    for p in params:
        p.grad = None


def gradient_variance(
    zm: ZooModel, x: torch.Tensor, num_data: int, draws: int
) -> tuple[float, float, torch.Tensor]:
    """``(V, standard error of V, mean gradient)`` over ``draws`` estimates on the batch ``x``,
    with the baselines held as they are."""
    groups = min(10, draws // 2)
    moments = None
    for k in range(draws):
        # the moving average would otherwise learn this one batch example by example
        with frozen_average_baseline(zm.guide.site):
            g = encoder_gradients(zm, x, 1, num_data=num_data)[0]
        if moments is None:
            moments = GroupedMoments(g.numel(), groups, g.device)
        moments.add(k % groups, g)
    variance, stderr = moments.result()
    counts = torch.tensor(moments.count, dtype=torch.float64, device=moments.mean.device)
    mean = (counts[:, None] * moments.mean).sum(0) / counts.sum()
    return variance, stderr, mean


def variance_table(
    entry: str,
    data: Dataset,
    overrides: dict[str, Any],
    states: dict[str, dict[str, Any]],
    args: argparse.Namespace,
) -> pd.DataFrame:
    """One row per (parameters, estimator): ``V``, its SE, the ratio to the reparameterized
    ``V`` and the distance of the mean gradient from the reparameterized mean."""
    gen = torch.Generator().manual_seed(args.seed + 7)
    idx = torch.randperm(data.num_train, generator=gen)[: args.batch_size].to(data.device)
    rows = []
    for point, state in states.items():
        means: dict[str, torch.Tensor] = {}
        values: dict[str, tuple[float, float]] = {}
        for estimator in args.estimators:
            zm = create_model(entry, data=data, seed=args.seed, estimator=estimator, **overrides)
            zm.to(data.device)
            _load(zm, state)
            reset_average_baseline()
            fit_baselines(zm, data, args.var_warmup, args.batch_size, args.baseline_lr)
            x = prepare_eval_data(zm, data.x_train.index_select(0, idx))
            torch.manual_seed(args.seed + 11)
            v, se, mean = gradient_variance(zm, x, data.num_train, args.var_draws)
            values[estimator], means[estimator] = (v, se), mean
        ref = "reparam" if "reparam" in means else args.estimators[0]
        for estimator in args.estimators:
            v, se = values[estimator]
            diff = (means[estimator] - means[ref]).norm().item()
            # the norm of the difference expected from noise alone: sqrt(sum of both variances/K)
            noise = math.sqrt(
                (values[estimator][0] + values[ref][0]) * means[ref].numel() / args.var_draws
            )
            rows.append(
                {
                    "parameters": point,
                    "estimator": LABELS[estimator],
                    "variance": v,
                    "stderr": se,
                    "ratio_to_reparam": v / values[ref][0],
                    "mean_gradient_norm": means[estimator].norm().item(),
                    "distance_to_reparam_mean": diff,
                    "expected_from_noise": noise if estimator != ref else 0.0,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Learning curves


def train_curves(
    entry: str, data: Dataset, overrides: dict[str, Any], args: argparse.Namespace
) -> tuple[pd.DataFrame, dict[str, ZooModel], dict[str, dict[str, Any]]]:
    """Train one model per estimator; returns the per-epoch history, the fitted models, and the
    initial and final states of the reparameterized run (for the variance probe)."""
    rows, fitted, states = [], {}, {}
    eval_data = dataclasses.replace(
        data,
        x_test=data.x_test[: args.eval_subset],
        y_test=None if data.y_test is None else data.y_test[: args.eval_subset],
    )
    for estimator in args.estimators:
        zm = create_model(
            entry,
            data=data,
            seed=args.seed,
            estimator=estimator,
            eval_k=args.iwae_k,
            eval_samples=args.elbo_samples,
            **overrides,
        )
        if estimator == "reparam":
            states["initial"] = clone_state(zm)
        config = TrainConfig(
            **{
                **get_spec(entry).training_defaults(zm.config),
                "num_epochs": args.num_epochs,
                "batch_size": args.batch_size,
                **({} if args.lr is None else {"lr": args.lr}),
                "device": str(data.device),
                "seed": args.seed,
                "progress": args.progress,
            }
        )
        history = fit(zm, eval_data, config=config).history
        for row in history.to_dict("records"):
            rows.append(
                {
                    "estimator": LABELS[estimator],
                    "lr": config.lr,
                    "epoch": int(row["epoch"]),
                    "train_loss": row["loss"],
                    "test_elbo": row["test_elbo"],
                    "test_iwae": row["test_iwae"],
                    "test_kl": row["test_kl"],
                    "epoch_seconds": row["seconds"],
                }
            )
        fitted[estimator] = zm
        if estimator == "reparam":
            states[f"reparam, epoch {args.num_epochs}"] = clone_state(zm)
    return pd.DataFrame(rows), fitted, states


def _lr_text(args: argparse.Namespace, curves: pd.DataFrame) -> str:
    if args.lr is not None:
        return f"{args.lr} for every estimator"
    rates = curves.groupby("estimator", sort=False)["lr"].first()
    return "; ".join(f"{lr:g} {name}" for name, lr in rates.items()) + " (the entry's defaults)"


def final_bounds(
    fitted: dict[str, ZooModel], data: Dataset, args: argparse.Namespace
) -> pd.DataFrame:
    """The test ELBO and the IWAE bound with ``--final-k`` samples after training."""
    rows = []
    for estimator, zm in fitted.items():
        zm.eval()
        x = prepare_eval_data(zm, data.x_test[: args.final_subset])
        model, guide = zm.callables()
        started = time.perf_counter()
        with torch.no_grad():
            iwae = iwae_log_likelihood(model, guide, x, args.final_k).double()
            elbo = elbo_per_example(model, guide, x, args.elbo_samples).double()
        n = x.shape[0]
        rows.append(
            {
                "estimator": LABELS[estimator],
                "test_elbo": elbo.mean().item(),
                "test_elbo_se": elbo.std().item() / math.sqrt(n),
                f"iwae_k{args.final_k}": iwae.mean().item(),
                "iwae_se": iwae.std().item() / math.sqrt(n),
                "examples": n,
                "eval_seconds": time.perf_counter() - started,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Main


def add_vae_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--data-dir`` and ``--entry``: the VAE benchmarks' model and data."""
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, mnist or digits")
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--entry", default="vae-fashion", help="a registered VAE entry")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vae", description=__doc__.split("\n")[0]
    )
    add_vae_arguments(parser)
    parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    parser.add_argument("--latent-dim", type=int, default=None, help="the entry's by default")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="the entry's")
    parser.add_argument("--num-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam's learning rate for every estimator (default: the entry's per estimator, "
        "1e-3 reparameterized and 3e-4 score function)",
    )
    parser.add_argument("--iwae-k", type=int, default=1000, help="k of the per-epoch bound")
    parser.add_argument("--elbo-samples", type=int, default=10, help="samples of the test ELBO")
    parser.add_argument("--eval-subset", type=int, default=1000, help="test images per epoch")
    parser.add_argument("--final-k", type=int, default=5000, help="k of the final bound")
    parser.add_argument("--final-subset", type=int, default=1000, help="test images, final")
    parser.add_argument("--var-draws", type=int, default=200, help="gradient draws per row")
    parser.add_argument("--var-warmup", type=int, default=300, help="baseline fitting steps")
    parser.add_argument("--baseline-lr", type=float, default=1e-3)
    add_run_arguments(parser)
    return parser


@local_params()
def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Run the benchmark, write ``vae.csv``, ``vae_grad_variance.csv``, ``vae_final.csv`` and
    ``vae.md`` under ``--out``, and return the three tables."""
    parser = _parser()
    args = parser.parse_args(argv)
    checks = {
        "--num-epochs": args.num_epochs >= 1,
        "--iwae-k": args.iwae_k >= 1,
        "--final-k": args.final_k >= 1,
        "--var-draws": args.var_draws >= 4,
        "--var-warmup": args.var_warmup >= 0,
        "--eval-subset": args.eval_subset >= 1,
        "--final-subset": args.final_subset >= 1,
        "--threads": args.threads is None or args.threads >= 1,
    }
    bad = [flag for flag, ok in checks.items() if not ok]
    if bad:
        parser.error(f"out of range: {', '.join(bad)} (--var-draws needs at least 4)")
    if get_spec(args.entry).family != "vae":
        parser.error(f"{args.entry} is not a VAE entry")
    with torch_threads(args.threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, pd.DataFrame]:
    started = time.perf_counter()
    device = resolve_device(args.device)
    data = load_data(args.data, args.data_dir, device, args.train_subset)
    overrides: dict[str, Any] = {}
    if args.latent_dim is not None:
        overrides["latent_dim"] = args.latent_dim
    if args.hidden is not None:
        overrides["hidden"] = tuple(args.hidden)
    curves, fitted, states = train_curves(args.entry, data, overrides, args)
    train_seconds = time.perf_counter() - started
    final = final_bounds(fitted, data, args)
    if "reparam" not in args.estimators:
        states = {"initial": clone_state(next(iter(fitted.values())))}
    variance = variance_table(args.entry, data, overrides, states, args)
    config = next(iter(fitted.values())).config

    md = header(
        "VAE: reparameterized against score-function gradients", device, "benchmarks.vae", argv
    )
    md += (
        "## Settings\n\n"
        f"- model: `{args.entry}` ({config.arch}, hidden {list(config.hidden)}, latent "
        f"{config.latent_dim}, {config.activation}, {config.likelihood} likelihood), data "
        f"{args.data} with N = {data.num_train} training images, dynamic binarization\n"
        f"- training: Adam lr {_lr_text(args, curves)}, batch {args.batch_size}, "
        f"{args.num_epochs} epochs, "
        f"one particle, seed {args.seed}; the same initial parameters for every estimator\n"
        f"- per epoch: test ELBO ({args.elbo_samples} samples) and IWAE bound (k = "
        f"{args.iwae_k}) on the first {min(args.eval_subset, data.num_test)} test images, "
        f"binarized once (seed {config.binarize_seed}); `epoch_seconds` is training only\n"
        f"- final: IWAE bound with k = {args.final_k} on the first "
        f"{min(args.final_subset, data.num_test)} test images\n"
        f"- gradient variance: {args.var_draws} draws of d ELBO / d phi on one fixed batch of "
        f"{args.batch_size} training images; baselines fitted for {args.var_warmup} steps at "
        "the fixed parameters first, then held fixed during the draws\n"
        f"- wall time: training {train_seconds:.0f} s, total "
        f"{time.perf_counter() - started:.0f} s\n\n"
    )
    last = curves[curves["epoch"] == curves["epoch"].max()]
    md += "## After the last epoch (nats per test image)\n\n"
    md += markdown_table(last.reset_index(drop=True)) + "\n"
    md += f"## Final bound, k = {args.final_k}\n\n" + markdown_table(final) + "\n"
    md += "## Variance of the encoder's gradient at fixed parameters\n\n"
    md += markdown_table(variance) + "\n"
    md += "## Learning curves\n\n" + markdown_table(curves)
    write_results(args.out, "vae", curves, md)
    variance.to_csv(f"{args.out}/vae_grad_variance.csv", index=False)
    final.to_csv(f"{args.out}/vae_final.csv", index=False)
    print(md)
    return {"curves": curves, "final": final, "variance": variance}


if __name__ == "__main__":
    main()
