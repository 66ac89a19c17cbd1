"""Why score-function VAE training diverges, and which settings keep it stable.

The score of the encoder's mean under ``q(z | x) = N(m, diag s^2)`` is ``eps / s``: as a scale
``s`` shrinks, the score-function (REINFORCE, Williams 1992) gradient of every encoder weight
that feeds it grows as ``1 / s``, while the reparameterized gradient (Kingma & Welling 2014)
does not.  This script trains one registered VAE with one estimator over a grid of Adam
learning rates, floors of the encoder's scale (``encoder_min_scale``) and seeds, and every
``--log-every`` steps records, on a fixed probe of ``--probe-size`` training images:

* ``kl``: the mean analytic KL(q(z | x) || N(0, I)) in nats, the term that explodes;
* ``min_scale`` and ``q001_scale``: the smallest posterior scale and its 0.1% quantile;
* ``grad_norm``: the encoder's gradient norm at that step (the objective is ``zoo.fit``'s,
  summed over ``N`` examples, so norms of ``1e8`` are normal);
* ``loss``: the mean training loss per example over the last ``--log-every`` steps.

Each run takes the steps of :class:`zoo.Trainer`, those :func:`zoo.fit` takes: minibatches
from each epoch's permutation, the entry's batch transform, the guard that stops at a
non-finite loss or gradient, and ``--clip-norm`` as its ``clip_norm`` (the global gradient
norm clipped before each Adam step); the logged ``grad_norm`` is the encoder's norm before
clipping.

A run counts as diverged when the probe's KL exceeds ``--kl-limit`` nats at any logged step
(the reparameterized fit sits near 15 to 20 nats on Fashion-MNIST).

Usage::

    python -m benchmarks.vae_stability                       # score-avg, 2 x 2 x 2 grid
    python -m benchmarks.vae_stability --estimator score-nn --lrs 3e-4 --floors 1e-2
    python -m benchmarks.vae_stability --data digits --entry vae-digits --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Sequence

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
from benchmarks.vae import add_vae_arguments
from guides.amortized import ESTIMATORS
from zoo import TrainConfig, Trainer, ZooModel, create_model, get_spec
from zoo.data import Dataset
from zoo.train import resolve_device
from zoo.util import local_params


def _probe(zm: ZooModel, x: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        loc, scale = zm.guide.encode(x)
        kl = (0.5 * (loc.square() + scale.square() - 1) - scale.log()).sum(-1).mean()
        flat = scale.flatten()
        q001 = flat.kthvalue(max(1, flat.numel() // 1000)).values
    return {"kl": kl.item(), "min_scale": flat.min().item(), "q001_scale": q001.item()}


def run_one(
    entry: str,
    data: Dataset,
    estimator: str,
    lr: float,
    floor: float,
    seed: int,
    args: argparse.Namespace,
) -> list[dict[str, float]]:
    """Train ``args.steps`` steps of :class:`zoo.Trainer` (the steps :func:`zoo.fit` takes, at
    learning rate ``lr``, batch ``args.batch_size``, clipping at ``args.clip_norm``, seeded
    ``seed``), logging the probe every ``args.log_every`` steps.

    :raises zoo.DivergenceError: at a non-finite loss or gradient, as :func:`zoo.fit` would.
    """
    zm = create_model(entry, data=data, seed=seed, estimator=estimator, encoder_min_scale=floor)
    per_epoch = math.ceil(data.num_train / min(args.batch_size, data.num_train))
    config = TrainConfig(
        num_epochs=math.ceil(args.steps / per_epoch),
        batch_size=args.batch_size,
        lr=lr,
        clip_norm=args.clip_norm,
        seed=seed,
        device=str(data.device),
        progress=False,
        eval_every=0,
    )
    trainer = Trainer(zm, data, config=config)
    encoder = [p for n, p in zm.guide.named_parameters() if not n.startswith("baseline")]
    probe_x = trainer.x_train[: args.probe_size]
    rows, losses = [], []
    for step in range(1, args.steps + 1):
        # Trainer.step() in its three phases, to read the encoder's gradient before update()
        # clips it
        xb, yb = trainer.next_batch()
        losses.append(trainer.backward(xb, yb) / trainer.num_data)
        if step % args.log_every == 0 or step == args.steps:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in encoder]))
            rows.append(
                {
                    "estimator": estimator,
                    "lr": lr,
                    "encoder_min_scale": floor,
                    "seed": seed,
                    "clip_norm": math.nan if args.clip_norm is None else args.clip_norm,
                    "step": step,
                    "loss": sum(losses) / len(losses),
                    "grad_norm": norm.item(),
                    **_probe(zm, probe_x),
                }
            )
            losses = []
        trainer.update()
    return rows


def summarize(steps: pd.DataFrame, kl_limit: float) -> pd.DataFrame:
    """One row per run: whether and when it diverged, and its extremes."""
    keys = ["estimator", "lr", "encoder_min_scale", "seed"]
    keys += ["clip_norm"] if "clip_norm" in steps else []  # absent from older results
    out = []
    for key, run in steps.groupby(keys, sort=False, dropna=False):
        over = run[run["kl"] > kl_limit]
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "diverged": not over.empty,
                "first_step_over_limit": int(over["step"].iloc[0]) if not over.empty else None,
                "max_kl": run["kl"].max(),
                "final_kl": run["kl"].iloc[-1],
                "min_scale": run["min_scale"].min(),
                "max_grad_norm": run["grad_norm"].max(),
                "final_loss": run["loss"].iloc[-1],
            }
        )
    return pd.DataFrame(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vae_stability", description=__doc__.split("\n\n")[0]
    )
    add_vae_arguments(parser)
    parser.add_argument("--estimator", choices=ESTIMATORS, default="score-avg")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-4])
    parser.add_argument("--floors", type=float, nargs="+", default=[1e-4, 1e-2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=4000, help="SVI steps per run")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--probe-size", type=int, default=500, help="training images probed")
    parser.add_argument("--clip-norm", type=float, default=None, help="global gradient norm")
    parser.add_argument("--kl-limit", type=float, default=100.0, help="nats; above: diverged")
    add_run_arguments(parser)
    parser.set_defaults(out="benchmarks/results/vae-stability")
    return parser


@local_params()
def main(argv: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if get_spec(args.entry).family != "vae":
        raise SystemExit(f"{args.entry} is not a VAE entry")
    if min(args.steps, args.log_every, args.batch_size, args.probe_size) < 1:
        raise SystemExit("steps, log-every, batch-size and probe-size must be >= 1")
    if not all(lr > 0 for lr in args.lrs) or not all(f > 0 for f in args.floors):
        raise SystemExit("every learning rate and scale floor must be positive")
    if args.clip_norm is not None and not args.clip_norm > 0:
        raise SystemExit(f"--clip-norm must be positive, got {args.clip_norm}")
    device = resolve_device(args.device)
    started = time.perf_counter()
    with torch_threads(args.threads):
        data = load_data(args.data, args.data_dir, device, args.train_subset)
        rows = []
        for lr, floor, seed in itertools.product(args.lrs, args.floors, args.seeds):
            run_started = time.perf_counter()
            rows += run_one(args.entry, data, args.estimator, lr, floor, seed, args)
            if args.progress:
                print(
                    f"lr {lr:g} floor {floor:g} seed {seed}: kl {rows[-1]['kl']:.1f}, "
                    f"{time.perf_counter() - run_started:.0f} s",
                    flush=True,
                )
    steps = pd.DataFrame(rows)
    if not steps[["loss", "kl"]].map(math.isfinite).all().all():
        print("warning: a run produced a non-finite loss or KL", file=sys.stderr)
    summary = summarize(steps, args.kl_limit)
    md = header(
        "VAE: stability of score-function training", device, "benchmarks.vae_stability", argv
    )
    md += (
        "## Settings\n\n"
        f"- model: `{args.entry}` on {args.data} (N = {data.num_train}), estimator "
        f"`{args.estimator}`, batch {args.batch_size}, {args.steps} steps per run, one "
        "particle, `zoo.Trainer` steps (minibatches from each epoch's permutation), gradient "
        "norm clipped at "
        f"{'none' if args.clip_norm is None else f'{args.clip_norm:g}'}\n"
        f"- probe: the first {args.probe_size} training images every {args.log_every} steps; "
        f"diverged = probe KL above {args.kl_limit:g} nats at a logged step\n"
        f"- wall time: {time.perf_counter() - started:.0f} s\n\n"
        "## Runs\n\n" + markdown_table(summary) + "\n"
        "## Every logged step\n\n" + markdown_table(steps) + "\n"
    )
    write_results(args.out, "vae_stability", steps, md)
    summary.to_csv(f"{args.out}/vae_stability_summary.csv", index=False)
    return {"steps": steps, "summary": summary}


if __name__ == "__main__":
    main()
