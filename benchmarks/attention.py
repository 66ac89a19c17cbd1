"""Attention as a latent variable: soft, enumerated, REINFORCE and amortized hard attention.

The same tile encoder, attention network and classifier (:mod:`zoo.models.attention`) are
trained on the ``cluttered-tiles`` task, cut from digits and from Fashion-MNIST, in each of the
ways the issue names, from the same initial parameters:

* ``soft`` -- the attention-weighted average of the tile features (``Trace_ELBO``, no latent);
* ``enum`` -- hard attention with the tile summed out exactly (``TraceEnum_ELBO``);
* ``reinforce``, ``reinforce-avg``, ``reinforce-nn`` -- hard attention, ``s ~ p(s|x)``, the
  score-function gradient (``TraceGraph_ELBO``) without a baseline, with the decaying average,
  and with the average plus a neural baseline ``b(x, y)``;
* ``amortized`` -- hard attention with the posterior ``q(s|x, y)``, score function with the
  average and neural baselines.

For each it reports the test accuracy of the exact predictive ``sum_s p(s|x) p(y|x_s)`` (soft:
its own predictive), the attention accuracy (``argmax_s p(s|x)`` is the object's tile), the
attention entropy, the number of steps until the test accuracy first reaches 95% of its final
value (evaluated at the end of every epoch, so the resolution is one epoch), and the training
time per step.  A hand-written PyTorch loop minimizing the same exact marginal likelihood as
``enum`` is timed in the same run, as the reference for Pyro's overhead.

**Variance of the attention network's gradient.**  At two fixed parameter sets, the shared
initial ones and those that ``enum`` reached, each method draws ``--var-draws`` gradients of its
training loss (``N/B`` scaled, as in training) with respect to the parameters of the attention
network it trains by that gradient (the model's ``w`` for soft, enum and REINFORCE; the
posterior's scoring network for ``amortized``, whose own trained parameters are used at the
second point) on one fixed batch.  Baselines are first fitted at those parameters for
``--var-warmup`` random minibatches (the moving average advances, the neural baseline takes Adam
steps on its own weights) and then held fixed.  ``V`` is the per-coordinate variance averaged
over the coordinates.  ``bias_z`` compares each method's mean gradient with the exact gradient
of its objective (enumerating the guide's site with ``TraceEnum_ELBO``): the distance divided by
the size noise alone explains, ``sqrt(sum_j var_j / K)``, about 1 for an unbiased estimator.

Usage::

    python -m benchmarks.attention --threads 1                      # both sources, ~10 min CPU
    python -m benchmarks.attention --sources digits --num-epochs 3  # a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from typing import Any

import pandas as pd
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from benchmarks.common import add_run_arguments, header, markdown_table, torch_threads
from benchmarks.grad_variance import GroupedMoments, clone_state
from guides.amortized import frozen_average_baseline, reset_average_baseline
from zoo import TrainConfig, Trainer, ZooModel, create_model, fit
from zoo.data import Dataset, load
from zoo.elbo import make_elbo
from zoo.models.attention import attention_parameters
from zoo.spec import resolve_elbo
from zoo.train import resolve_device
from zoo.util import local_params

#: method -> (mode, estimator)
METHODS = {
    "soft": ("soft", None),
    "enum": ("enum", None),
    "reinforce": ("reinforce", "score"),
    "reinforce-avg": ("reinforce", "score-avg"),
    "reinforce-nn": ("reinforce", "score-nn"),
    "amortized": ("amortized", "score-nn"),
}
SOURCES = ("digits", "fashion-mnist")
PYTORCH = "pytorch loop (enum's loss)"


def _entry(method: str, source: str) -> str:
    return f"attention-{METHODS[method][0]}{'' if source == 'digits' else '-fashion'}"


def _create(method: str, source: str, data: Dataset, seed: int) -> ZooModel:
    estimator = METHODS[method][1]
    kwargs = {} if estimator is None else {"estimator": estimator}
    return create_model(_entry(method, source), data=data, seed=seed, **kwargs).to(data.device)


# --------------------------------------------------------------------------------------------
# gradient variance at fixed parameters


def _clear_grads(zm: ZooModel) -> None:
    for p in zm.parameters():
        p.grad = None


def _fit_baselines(zm: ZooModel, data: Dataset, steps: int, batch: int, lr: float) -> None:
    """Advance the moving average and fit the neural baseline at ``zm``'s fixed parameters."""
    if zm.config.mode not in ("reinforce", "amortized") or zm.config.estimator == "score":
        return
    elbo = make_elbo("tracegraph", max_plate_nesting=1)
    model, guide = zm.callables()
    baseline = [] if zm.guide.baseline is None else list(zm.guide.baseline.parameters())
    optimizer = torch.optim.Adam(baseline, lr=lr) if baseline else None
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randperm(data.num_train, generator=gen)[:batch].to(data.device)
        _clear_grads(zm)
        elbo.loss_and_grads(
            model, guide, data.x_train[idx], data.y_train[idx], num_data=data.num_train
        )
        if optimizer is not None:
            optimizer.step()
    _clear_grads(zm)


def _exact_gradient(zm: ZooModel, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """The exact gradient of the method's loss: the guide's site enumerated, if it has one."""
    params = attention_parameters(zm)
    _clear_grads(zm)
    if zm.config.mode == "soft":  # no latent: its one-sample ELBO is exact
        elbo, guide = make_elbo("trace"), zm.guide
    else:
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
        guide = zm.guide if zm.config.mode == "enum" else config_enumerate(zm.guide)
    elbo.loss_and_grads(zm.model, guide, x, y, num_data=n)
    grad = torch.cat([p.grad.reshape(-1) for p in params])
    _clear_grads(zm)
    return grad


def gradient_variance(
    zm: ZooModel, x: torch.Tensor, y: torch.Tensor, num_data: int, draws: int
) -> dict[str, float]:
    """``V`` (mean per-coordinate variance), its standard error, and ``bias_z`` over ``draws``
    gradients of the attention network's parameters on the batch ``(x, y)``."""
    elbo = make_elbo(resolve_elbo(zm, TrainConfig()), max_plate_nesting=1)
    model, guide = zm.callables()
    params = attention_parameters(zm)
    groups = min(10, draws // 2)
    moments = None
    for k in range(draws):
        _clear_grads(zm)
        with frozen_average_baseline("s"):
            elbo.loss_and_grads(model, guide, x, y, num_data=num_data)
        g = torch.cat([p.grad.reshape(-1) for p in params])
        if moments is None:
            moments = GroupedMoments(g.numel(), groups, g.device)
        moments.add(k % groups, g)
    _clear_grads(zm)
    variance, stderr = moments.result()
    counts = torch.tensor(moments.count, dtype=torch.float64, device=moments.mean.device)
    mean = (counts[:, None] * moments.mean).sum(0) / counts.sum()
    exact = _exact_gradient(zm, x, y, num_data).to(torch.float64)
    noise = math.sqrt(variance * mean.numel() / draws)
    return {
        "variance": variance,
        "stderr": stderr,
        "mean_gradient_norm": mean.norm().item(),
        "exact_gradient_norm": exact.norm().item(),
        "bias_z": (mean - exact).norm().item() / noise if noise > 0 else 0.0,
        "max_abs_error": (mean - exact).abs().max().item(),
    }


def variance_table(
    source: str,
    data: Dataset,
    states: dict[str, dict[str, dict[str, Any]]],
    args: argparse.Namespace,
) -> pd.DataFrame:
    """Rows per (parameters, method): the attention gradient's variance at the initial and at
    the enum-trained parameters."""
    gen = torch.Generator().manual_seed(args.seed + 7)
    idx = torch.randperm(data.num_train, generator=gen)[: args.batch_size].to(data.device)
    x, y = data.x_train[idx], data.y_train[idx]
    rows = []
    points = {"initial": "initial", "enum-trained": "final"}
    for point, key in points.items():
        values = {}
        for method in args.methods:
            zm = _create(method, source, data, args.seed)
            if point == "initial":
                zm.load_state_dict(states[method]["initial"])
            else:
                # the enum run's model; the amortized posterior keeps its own trained weights
                zm.model.load_state_dict(states["enum"][key]["model"])
                zm.guide.load_state_dict(states[method][key]["guide"])
            reset_average_baseline()
            _fit_baselines(zm, data, args.var_warmup, args.batch_size, args.lr)
            torch.manual_seed(args.seed + 11)
            values[method] = gradient_variance(zm, x, y, data.num_train, args.var_draws)
        ref = values.get("reinforce", {}).get("variance")
        for method, v in values.items():
            rows.append(
                {
                    "source": source,
                    "parameters": point,
                    "method": method,
                    **v,
                    # the same parameters are differentiated only by the REINFORCE variants
                    "ratio_to_no_baseline": v["variance"] / ref
                    if ref and method.startswith("reinforce")
                    else float("nan"),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# training


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def _steps_to(history: pd.DataFrame, fraction: float) -> int:
    target = fraction * history["test_accuracy"].iloc[-1]
    hit = history[history["test_accuracy"] >= target]
    return int(hit["step"].iloc[0])


def _train_config(data: Dataset, args: argparse.Namespace) -> TrainConfig:
    """The settings every method trains with."""
    return TrainConfig(
        num_epochs=args.num_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=str(data.device),
        seed=args.seed,
        progress=args.progress,
    )


def train_all(
    source: str, data: Dataset, args: argparse.Namespace
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]], dict[str, ZooModel]]:
    """Train every method; returns the final table, the learning curves, the initial and final
    states, and the fitted models."""
    rows, curves, states, fitted = [], [], {}, {}
    for method in args.methods:
        zm = _create(method, source, data, args.seed)
        states[method] = {"initial": clone_state(zm)}
        config = _train_config(data, args)
        result = fit(zm, data, config=config)
        states[method]["final"] = clone_state(zm)
        fitted[method] = zm
        h = result.history
        for row in h.to_dict("records"):
            curves.append({"source": source, "method": method, **row})
        last = h.iloc[-1]
        rows.append(
            {
                "source": source,
                "method": method,
                "elbo": resolve_elbo(zm, config),
                "accuracy": last["test_accuracy"],
                "attention_accuracy": last["test_attention_accuracy"],
                "posterior_attention_accuracy": last.get(
                    "test_posterior_attention_accuracy", float("nan")
                ),
                # binomial standard error of both accuracies on the test grids
                "accuracy_se": _binomial_se(last["test_accuracy"], data.num_test),
                "attention_accuracy_se": _binomial_se(
                    last["test_attention_accuracy"], data.num_test
                ),
                "attention_entropy": last["test_attention_entropy"],
                "nll": last["test_nll"],
                "steps_to_95": _steps_to(h, 0.95),
                "steps": result.steps,
                "ms_per_step": 1000 * h["seconds"].sum() / result.steps,
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(curves), states, fitted


def step_times(source: str, data: Dataset, args: argparse.Namespace) -> pd.DataFrame:
    """Median milliseconds per optimizer step of every method and of a hand-written PyTorch
    loop minimizing ``enum``'s exact loss ``-(N/B) sum_i log sum_s p(s|x_i) p(y_i|x_i, s)`` on
    the same network without Pyro, timed in interleaved rounds so that all see the same load.

    A method's step is :meth:`zoo.Trainer.step` with the settings :func:`train_all` trains
    with: the step :func:`zoo.fit` takes, without the epochs' evaluation.  The reference's is
    one ``backward`` and one Adam step on a random minibatch.
    """
    n, batch = data.num_train, args.batch_size
    gen = torch.Generator().manual_seed(args.seed)
    steps: dict[str, Any] = {}
    config = dataclasses.replace(_train_config(data, args), progress=False, eval_every=0)
    for method in args.methods:
        trainer = Trainer(_create(method, source, data, args.seed), data, config=config)
        # the trainer draws its own minibatch, from its epoch's permutation
        steps[method] = lambda _idx, trainer=trainer: trainer.step()
    net = _create("enum", source, data, args.seed).model
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)

    def torch_step(idx: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        log_py, _ = net.predict(data.x_train[idx])
        loss = -(n / len(idx)) * log_py.gather(-1, data.y_train[idx][:, None]).sum()
        loss.backward()
        optimizer.step()

    steps[PYTORCH] = torch_step
    reset_average_baseline()
    times: dict[str, list[float]] = {name: [] for name in steps}
    per_round = max(1, args.timing_steps // args.timing_rounds)
    for r in range(args.timing_rounds + 1):
        for name, step in steps.items():
            batches = [
                torch.randperm(n, generator=gen)[:batch].to(data.device) for _ in range(per_round)
            ]
            started = time.perf_counter()
            for idx in batches:
                step(idx)
            if r > 0:  # round 0 warms up
                times[name].append(1000 * (time.perf_counter() - started) / per_round)
    reset_average_baseline()
    ref = statistics.median(times[PYTORCH])
    rows = []
    for name, values in times.items():
        ms = statistics.median(values)
        rows.append(
            {
                "source": source,
                "method": name,
                "ms_per_step": ms,
                "min_ms": min(values),
                "max_ms": max(values),
                "ratio_to_pytorch": ms / ref,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.attention", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--clutter", type=int, default=3)
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--num-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--var-draws", type=int, default=200, help="gradient draws per row")
    parser.add_argument("--var-warmup", type=int, default=200, help="baseline fitting steps")
    parser.add_argument("--timing-steps", type=int, default=200, help="timed steps per method")
    parser.add_argument("--timing-rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--maps", type=int, default=8, help="grids per attention map PNG")
    add_run_arguments(parser)
    parser.set_defaults(out="benchmarks/results/attention")
    return parser


@local_params()
def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Run the benchmark, write ``attention.csv`` (final table), ``attention_curves.csv``,
    ``attention_grad_variance.csv``, ``attention_timing.csv``, ``attention.md`` and the attention
    maps ``maps/*.png`` under ``--out``, and return the tables."""
    parser = _parser()
    args = parser.parse_args(argv)
    checks = {
        "--num-epochs": args.num_epochs >= 1,
        "--var-draws": args.var_draws >= 4,
        "--var-warmup": args.var_warmup >= 0,
        "--timing-steps": args.timing_steps >= 1,
        "--timing-rounds": args.timing_rounds >= 1,
        "--threads": args.threads is None or args.threads >= 1,
    }
    bad = [flag for flag, ok in checks.items() if not ok]
    if bad:
        parser.error(f"out of range: {', '.join(bad)} (--var-draws needs at least 4)")
    if "enum" not in args.methods:
        parser.error("--methods must include enum: its trained parameters are a variance point")
    with torch_threads(args.threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, pd.DataFrame]:
    from pathlib import Path

    started = time.perf_counter()
    device = resolve_device(args.device)
    out = Path(args.out)
    finals, curves, variances, timings = [], [], [], []
    sizes = {}
    for source in args.sources:
        data = load(
            "cluttered-tiles",
            data_dir=args.data_dir,
            device=device,
            source=source,
            grid=args.grid,
            clutter=args.clutter,
            num_train=args.num_train,
            num_test=args.num_test,
            seed=args.seed,
        )
        sizes[source] = data.info.input_shape
        final, curve, states, fitted = train_all(source, data, args)
        finals.append(final)
        curves.append(curve)
        for method, zm in fitted.items():
            zm.eval()
            for path in zm.spec.hooks.plot(zm, data, out / "maps", num=args.maps):
                # one file per method: the three REINFORCE runs share an entry name
                path.replace(path.with_name(f"{source}_{method}_{path.name.split('_')[-1]}"))
        timings.append(step_times(source, data, args))
        variances.append(variance_table(source, data, states, args))
    final = pd.concat(finals, ignore_index=True)
    curve = pd.concat(curves, ignore_index=True)
    variance = pd.concat(variances, ignore_index=True)
    timing = pd.concat(timings, ignore_index=True)

    md = header(
        "Attention as a latent variable: soft, enumerated, REINFORCE, amortized",
        device,
        "benchmarks.attention",
        argv,
    )
    shapes = ", ".join(f"{s} {tuple(v)}" for s, v in sizes.items())
    md += (
        "## Settings\n\n"
        f"- data: cluttered-tiles, {args.grid}x{args.grid} tiles, {args.clutter} fragments of "
        f"half a tile per clutter tile, {args.num_train} training and {args.num_test} test grids "
        f"per source (inputs {shapes}), seed {args.seed}\n"
        "- model: the registry entries' defaults (tile MLP T^2-128-64, "
        "attention MLP 64-64-1, linear classifier); same initial parameters for every method\n"
        f"- training: Adam lr {args.lr}, batch {args.batch_size}, {args.num_epochs} epochs, one "
        "particle; test metrics after every epoch\n"
        f"- variance: {args.var_draws} draws on one fixed batch of {args.batch_size}, baselines "
        f"fitted for {args.var_warmup} steps first\n"
        f"- wall time: {time.perf_counter() - started:.0f} s\n\n"
    )
    md += "## Final test metrics\n\n" + markdown_table(final) + "\n"
    md += (
        "## Time per step against a hand-written PyTorch loop\n\n"
        f"Median over {args.timing_rounds} interleaved rounds of "
        f"{max(1, args.timing_steps // args.timing_rounds)} steps (`zoo.Trainer.step()`, the "
        "step `zoo.fit` takes, without its evaluations; the final table's `ms_per_step` is "
        "inside `zoo.fit`, whose epochs ran at different times).\n\n"
    )
    md += markdown_table(timing) + "\n"
    md += "## Variance of the attention network's gradient at fixed parameters\n\n"
    md += markdown_table(variance) + "\n"
    md += "## Learning curves\n\n" + markdown_table(curve)
    out.mkdir(parents=True, exist_ok=True)
    final.to_csv(out / "attention.csv", index=False)
    curve.to_csv(out / "attention_curves.csv", index=False)
    variance.to_csv(out / "attention_grad_variance.csv", index=False)
    timing.to_csv(out / "attention_timing.csv", index=False)
    (out / "attention.md").write_text(md)
    print(md)
    return {"final": final, "curves": curve, "variance": variance, "timing": timing}


if __name__ == "__main__":
    main()
