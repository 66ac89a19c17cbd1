"""How the mean-field guide's initial scale sets the width of q in a fixed training budget.

The ``meanfield`` guide (Bayes by Backprop, Blundell et al. 2015) keeps each weight's scale as
``softplus(rho)``; for small scales ``softplus(rho) ~ exp(rho)``, and Adam moves ``rho`` by about
``lr`` per step, so in ``T`` steps a scale can grow at most about ``exp(lr T)``-fold.  The initial
scale therefore bounds the final width.  This script trains one registered Gaussian-prior entry
with its own recipe (``zoo compare``'s settings: its epochs, seed, no evaluation during
training) once per initial scale, either one scale for every weight (``--scales``, the zoo's
earlier default was 1e-3) or the per-layer rule ``sigma0 = sqrt(alpha mean(mu0^2))`` of
:func:`guides.meanfield.relative_init_scale` (``--alphas``), and records:

* ``elbo_per_point``: the training objective at the end, the mean of ``-loss`` over the last
  5% of steps (the KL weight is 1 there), in nats per training example;
* ``scale_<layer>``: the mean trained scale of each weight tensor;
* ``mean_mi``: the mean mutual information ``I[y; W | x]`` over the test split, in nats
  (:func:`zoo.evaluate.mutual_information` of ``--num-samples`` predictive draws);
* the columns of :func:`zoo.compare_models` for the model alone: ``elpd_loo``, ``p_loo``, the
  count of Pareto ``k > 0.7``, ``vi_khat`` (Yao et al. 2018), ``test_elpd``, ``accuracy`` and
  ``ece``.

The test columns are there to check that a rule does not buy width with a worse fit; the rule
itself is chosen from the training objective and theory (see docs/bnn.md).

Usage::

    python -m benchmarks.meanfield_init --threads 1                  # lenet300-normal, digits
    python -m benchmarks.meanfield_init --entry logreg --alphas 0.01 --scales 1e-3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyro
import torch

from benchmarks.common import (
    add_run_arguments,
    header,
    load_data,
    markdown_table,
    torch_threads,
    write_results,
)
from zoo import compare_models, create_model, fit
from zoo.data import Dataset
from zoo.evaluate import mutual_information, predictive_draws
from zoo.models.weights import weight_guide
from zoo.train import resolve_device
from zoo.util import local_params

#: the columns taken from :func:`zoo.compare_models`'s table
COMPARE_COLUMNS = ("elpd_loo", "p_loo", "vi_khat", "test_elpd", "accuracy", "ece")


@local_params()
def run_one(
    entry: str, data: Dataset, init: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Train ``entry`` (guide ``meanfield``) from the initial scale ``init`` (``init_scale``
    or ``init_alpha``) with its recipe, and score it; one row of the table."""
    device = resolve_device(args.device)
    zm = create_model(entry, data=data, guide="meanfield", seed=args.seed, **init)
    with torch.no_grad():
        initial = {f"init_scale_{s.site}": s.scale.mean().item() for s in weight_guide(zm).sites}
    overrides: dict[str, Any] = {"device": str(device), "seed": args.seed, "eval_every": 0}
    if args.num_epochs is not None:
        overrides["num_epochs"] = args.num_epochs
    result = fit(zm, data, progress=args.progress, **overrides)
    tail = result.losses[-max(1, len(result.losses) // 20) :]
    sites = weight_guide(zm).sites
    row: dict[str, Any] = {
        "entry": entry,
        "init": ", ".join(f"{k}={v:g}" for k, v in init.items()),
        "steps": result.steps,
        "fit_seconds": result.seconds,
        "elbo_per_point": -sum(tail) / len(tail),
        **initial,
    }
    with torch.no_grad():
        for s in sites:
            row[f"scale_{s.site}"] = s.scale.mean().item()
        pyro.set_rng_seed(args.seed)
        draws = predictive_draws(zm, data.x_test, num_samples=args.num_samples)
        row["mean_mi"] = mutual_information(draws).mean().item()
    label = f"{entry}:meanfield"
    table = compare_models({label: zm}, data, num_samples=args.num_samples, seed=args.seed).table
    first = table.iloc[0]
    row.update({k: float(first[k]) for k in COMPARE_COLUMNS})
    row["k_over_0.7"] = _k_count(str(first["warnings"]))
    return row


def _k_count(warnings: str) -> int:
    """The count of Pareto ``k > 0.7`` in a warnings cell of :func:`zoo.compare_models`."""
    for part in warnings.split(";"):
        part = part.strip()
        if part.endswith("k>0.7"):
            return int(part.split("/")[0])
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entry", default="lenet300-normal", help="a Gaussian-prior registry entry")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--num-epochs", type=int, default=None, help="(default: the entry's)")
    p.add_argument("--num-samples", type=int, default=100, help="posterior draws for scoring")
    p.add_argument("--scales", type=float, nargs="*", default=[1e-3], help="one scale for all")
    p.add_argument(
        "--alphas",
        type=float,
        nargs="*",
        default=[0.0025, 0.01, 0.04, 0.09, 1.0],
        help="noise-to-signal ratios of the per-layer rule",
    )
    add_run_arguments(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the sweep and write ``meanfield_init.csv`` and ``.md`` to ``--out``."""
    args = parse_args(argv)
    inits = [{"init_scale": s} for s in args.scales] + [{"init_alpha": a} for a in args.alphas]
    with torch_threads(args.threads):
        data = load_data(args.data, args.data_dir, resolve_device(args.device), args.train_subset)
        rows = []
        for init in inits:
            row = run_one(args.entry, data, init, args)
            rows.append(row)
            print(
                f"{row['init']}: elbo/pt {row['elbo_per_point']:.2f}, mean MI "
                f"{row['mean_mi']:.4f}, p_loo {row['p_loo']:.1f}",
                file=sys.stderr,
            )
    frame = pd.DataFrame(rows)
    shown = ["init", "elbo_per_point", "mean_mi", "elpd_loo", "p_loo", "k_over_0.7", "vi_khat"]
    shown += ["test_elpd", "accuracy", "ece"]
    shown += [c for c in frame.columns if c.startswith(("init_scale_", "scale_"))]
    md = header(
        f"Mean-field initial scale: {args.entry} on {args.data}",
        resolve_device(args.device),
        "benchmarks.meanfield_init",
        None if argv is None else list(argv),
    )
    md += markdown_table(frame[shown]) + "\n"
    write_results(args.out, "meanfield_init", frame, md)
    return frame


if __name__ == "__main__":
    main()
