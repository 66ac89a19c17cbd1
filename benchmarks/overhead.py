"""The zoo's overhead: each model's SVI step against the same step hand-written in PyTorch.

For every entry below, the zoo's training step, :meth:`zoo.Trainer.step` (exactly the step
:func:`zoo.fit` takes, with the entry's training defaults at the timed batch size and learning
rate: the next minibatch of the epoch's device-resident permutation, the entry's batch
transform, the KL-annealing handler, ``loss_and_grads``, the finite loss and gradient guard,
gradient clipping when set, Adam, the learning-rate scheduler and the post-step hook), is timed
against a reference written here from the model's formulas in plain PyTorch (no Pyro), with the
same architecture, parameters, estimator, noise and optimizer.
``tests/benchmarks/test_benchmarks_overhead.py`` checks that both sides compute the same ELBO
for the same parameters and the same random draws.

* ``sparsevd-lenet300``, ``sparsevd-lenet5``: sparse variational dropout (Molchanov et al.
  2017) with the local reparameterization (Kingma et al. 2015), on Fashion-MNIST;
* ``vae``: the VAE of Kingma & Welling (2014), ``vae-fashion`` (784-400-50, Bernoulli,
  dynamic binarization), reparameterized single-sample ELBO;
* ``ppca``: probabilistic PCA (Tipping & Bishop 1999) with the exact posterior as guide, on
  digits.

``hard-attention`` is the ``attention-enum`` entry, whose tile location is summed exactly by
``TraceEnum_ELBO``; its reference computes the same marginal likelihood with ``logsumexp``.

Timing: for each entry and batch size, blocks of ``--steps`` steps of each side alternate
(which side goes first alternates too) for ``--reps`` repetitions after a warm-up; each
repetition gives a ratio zoo / reference, and the table reports medians.  On CUDA the blocks
are timed with CUDA events after a synchronize.  Per epoch is the median step time times the
steps of one epoch, ``ceil(N / B)``.  Peak memory is the peak of the memory allocated during
one step above what was allocated before it (CUDA: ``max_memory_allocated``; CPU: the
running sum of the bytes each op allocates and frees, from torch's profiler, so to the
granularity of one op).

Usage::

    python -m benchmarks.overhead --threads 1                    # CPU (and CUDA if present)
    python -m benchmarks.overhead --models ppca vae --batch-sizes 100 --reps 5
    python -m benchmarks.overhead --compiled --threads 1   # compile=True columns (slow: compiles)

``--compiled`` times ``Trainer(..., compile=True)`` against ``torch.compile`` of the
hand-written step and against the eager one (:mod:`benchmarks.overhead_compiled`); the
hand-written references are in :mod:`benchmarks.overhead_refs`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import ELBO, TraceMeanField_ELBO
from torch import nn

from benchmarks.common import header, load_data, markdown_table, torch_threads, write_results
from benchmarks.overhead_compiled import PairSpec, compiled_row, report
from benchmarks.overhead_refs import LOG_SIGMA2_MIN, PPCA, VAE, HardAttention, SparseVDNet
from zoo import create_model
from zoo.data import Dataset
from zoo.spec import ZooModel
from zoo.train import Trainer, grads_finite, resolve_device
from zoo.util import local_params

__all__ = ["ENTRIES", "MISSING", "Pair", "main", "time_pair"]


@dataclass
class Pair:
    """Both sides of one comparison, sharing data and initial parameters.

    :ivar zoo_step: :meth:`zoo.Trainer.step`, one zoo training step on its next minibatch.
    :ivar ref_step: one hand-written training step on a fresh random minibatch.
    :ivar zoo_loss: ``-ELBO`` of the zoo on ``(x, y)`` at the current parameters (draws noise).
    :ivar ref_loss: the same for the reference (draws the same noise in the same order).
    :ivar num_data: ``N``, the training-set size the plate stands for.
    :ivar spec: what the compiled columns (:mod:`benchmarks.overhead_compiled`) rebuild both
        sides from, fresh from the same initial parameters; ``None`` for the ablations.
    """

    zoo_step: Callable[[], object]
    ref_step: Callable[[], object]
    zoo_loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    ref_loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    num_data: int
    spec: PairSpec | None = None


def _zoo_side(
    zm: ZooModel,
    data: Dataset,
    batch: int,
    lr: float,
    elbo: ELBO | None = None,
    validate_every_step: bool = False,
) -> tuple[Callable, Callable]:
    """The step :func:`zoo.fit` takes, :meth:`zoo.Trainer.step` (the entry's training defaults
    at batch ``batch`` and learning rate ``lr``; Pyro's validation as the caller set it, for the
    run's first steps only, as in ``fit``), and the zoo's ``-ELBO`` of a given batch at
    ``beta = 1``.  ``elbo`` replaces the entry's estimator, ``validate_every_step`` validates
    every step as ``fit`` did before issue 19 (ablations)."""
    trainer = Trainer(
        zm,
        data,
        lr=lr,
        batch_size=batch,
        device=str(data.device),
        progress=False,
        eval_every=0,
        validate=True,
    )
    if elbo is not None:
        trainer.elbo = elbo
    if validate_every_step:
        trainer.validated_steps = math.inf
    model, guide = zm.callables()  # without the KL annealing: the ELBO itself
    n = trainer.num_data

    def loss(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        # TraceEnum_ELBO refuses to run without autograd, even when only the value is wanted
        with torch.enable_grad():
            return trainer.elbo.differentiable_loss(model, guide, x, y, num_data=n).detach()

    return trainer.step, loss


def _ref_side(
    module: nn.Module,
    neg_elbo: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    data: Dataset,
    batch: int,
    lr: float,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[], object]:
    """A plain PyTorch loop: random minibatch, ``-ELBO``, backward, the same guard, Adam."""
    params = list(module.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    n = data.num_train
    labelled = data.y_train is not None

    def step() -> None:
        idx = torch.randint(n, (batch,), device=data.device)
        xb = data.x_train.index_select(0, idx)
        yb = data.y_train.index_select(0, idx) if labelled else None
        if transform is not None:
            xb = transform(xb)
        optimizer.zero_grad(set_to_none=True)
        loss = neg_elbo(xb, yb)
        loss.backward()
        if not (math.isfinite(loss.item()) and grads_finite(params)):
            raise FloatingPointError("the reference step diverged")
        optimizer.step()

    return step


def _create(name: str, data: Dataset, **kwargs) -> ZooModel:
    return create_model(name, data=data, seed=0, **kwargs)


def _pair(
    make: Callable[[], ZooModel],
    reference: Callable[[ZooModel], nn.Module],
    data: Dataset,
    batch: int,
    lr: float,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Pair:
    """The zoo's step for ``zm = make()`` and the step of ``reference(zm)``, a plain module
    built from ``zm``'s initial parameters with a ``neg_elbo(x, y, num_data)`` method."""
    zm = make()
    spec = PairSpec(make, reference, batch, lr, transform)
    zoo_step, zoo_loss = _zoo_side(zm, data, batch, lr)
    ref = reference(zm).to(data.device)
    n = data.num_train
    neg_elbo = partial(ref.neg_elbo, num_data=n)
    ref_step = _ref_side(ref, neg_elbo, data, batch, lr, transform)
    return Pair(zoo_step, ref_step, zoo_loss, neg_elbo, n, spec)


# ---------------------------------------------------------------------------------------------
# Sparse VD (Molchanov et al. 2017, eq. 14 and sec. 4.2) with the LRT (Kingma et al. 2015)


def sparse_vd_pair(net: str, data: Dataset, batch: int, lr: float = 1e-3) -> Pair:
    """SparseVD on ``lenet300`` or ``lenet5`` (the ``<net>-loguniform`` entry, ``sparse-vd``)."""
    make = partial(_create, f"{net}-loguniform", data, guide="sparse-vd")
    return _pair(make, SparseVDNet, data, batch, lr)


# ---------------------------------------------------------------------------------------------
# VAE (Kingma & Welling 2014): Bernoulli decoder, Gaussian encoder, one reparameterized sample


def vae_pair(data: Dataset, batch: int, lr: float = 1e-3) -> Pair:
    """The ``vae-fashion`` entry (MLP 784-400-50, ReLU, Bernoulli, dynamic binarization)."""
    make = partial(_create, "vae-fashion", data)
    # dynamic binarization, as the zoo's batch transform does (after its [0, 1] check)
    return _pair(make, VAE, data, batch, lr, transform=torch.bernoulli)


# ---------------------------------------------------------------------------------------------
# PPCA (Tipping & Bishop 1999): x = W z + mu + sigma e; the guide is the exact p(z | x)


def ppca_pair(data: Dataset, batch: int, lr: float = 0.1) -> Pair:
    """The ``ppca`` entry (latent 2) with its exact-posterior guide, Trace_ELBO."""
    return _pair(partial(_create, "ppca", data), PPCA, data, batch, lr)


# ---------------------------------------------------------------------------------------------
# Hard attention, the tile enumerated (Xu et al. 2015's hard attention, summed exactly)


def attention_pair(data: Dataset, batch: int, lr: float = 1e-3) -> Pair:
    """The ``attention-enum`` entry (3 x 3 cluttered digit tiles) with ``TraceEnum_ELBO``."""
    return _pair(partial(_create, "attention-enum", data), HardAttention, data, batch, lr)


#: name -> (builder(data, batch) -> Pair, default dataset).
ENTRIES: dict[str, tuple[Callable[[Dataset, int], Pair], str]] = {
    "sparsevd-lenet300": (partial(sparse_vd_pair, "lenet300"), "fashion-mnist"),
    "sparsevd-lenet5": (partial(sparse_vd_pair, "lenet5"), "fashion-mnist"),
    "vae": (vae_pair, "fashion-mnist"),
    "ppca": (ppca_pair, "digits"),
    "hard-attention": (attention_pair, "cluttered-tiles"),
}
#: Entries issue 8 asks for that cannot be timed yet (name -> why).
MISSING: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------
# ablation: each speed-up of issue 8 undone in turn, on SparseVD LeNet-300-100


def _normal_guide(zm: ZooModel) -> None:
    """The sparse-VD guide as it was: a ``Normal`` through sigma, not ``LogVarianceNormal``."""

    def distribution(site):
        scale = (0.5 * site.log_sigma2.clamp(min=LOG_SIGMA2_MIN)).exp()
        return dist.Normal(site.theta, scale).to_event(site.theta.dim())

    for site in zm.guide.sites:
        site.distribution = partial(distribution, site)


#: name -> how the zoo's step is changed: (ELBO to use or None, change to the model or None,
#: Pyro validation on).
ABLATIONS: dict[str, tuple[type[ELBO] | None, Callable[[ZooModel], None] | None, bool]] = {
    "Pyro's TraceMeanField_ELBO": (TraceMeanField_ELBO, None, False),
    "weights drawn under the LRT": (
        None,
        lambda zm: setattr(zm.handler, "draw_weights", True),
        False,
    ),
    "Normal guide (through sigma)": (None, _normal_guide, False),
    "Pyro validation on": (None, None, True),
}


def ablation_pair(name: str, data: Dataset, batch: int, lr: float = 1e-3) -> Pair:
    """The zoo's SparseVD LeNet-300-100 step against the same step with one change undone
    (``ref_*`` is the undone one, so the ratio is now / before)."""
    elbo_cls, change, validate = ABLATIONS[name]
    sides = []
    for undone in (False, True):
        zm = _create("lenet300-loguniform", data, guide="sparse-vd")
        elbo = elbo_cls(max_plate_nesting=1) if undone and elbo_cls else None
        if undone and change is not None:
            change(zm)
        every = undone and validate
        step, loss = _zoo_side(zm, data, batch, lr, elbo, validate_every_step=every)
        if every:
            step = _validated(step)
        sides.append((step, loss))
    return Pair(sides[0][0], sides[1][0], sides[0][1], sides[1][1], data.num_train)


def _validated(step: Callable[[], object]) -> Callable[[], object]:
    def run() -> None:
        with pyro.validation_enabled(True):
            step()

    return run


# ---------------------------------------------------------------------------------------------
# timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _block_ms(step: Callable[[], object], steps: int, device: torch.device) -> float:
    """Milliseconds per step over a block of ``steps`` steps."""
    _sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / steps
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - started) / steps


def peak_memory_mib(step: Callable[[], object], device: torch.device) -> float:
    """Peak memory allocated during one ``step`` above what was allocated before it, in MiB."""
    if device.type == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # Net bytes each op allocated itself (children excluded), and the frees the profiler could
    # not attribute to an op ("[memory]"), in time order: the running sum peaks at the step's
    # peak, to the granularity of one op.
    changes = sorted(
        (
            e.time_range.start,
            e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage,
        )
        for e in prof.events()
    )
    level = peak = 0
    for _, delta in changes:
        level += delta
        peak = max(peak, level)
    return peak / 2**20


def time_pair(pair: Pair, device: torch.device, reps: int, steps: int, warmup: int = 3) -> dict:
    """Alternate blocks of ``steps`` steps of each side, ``reps`` times; medians."""
    for _ in range(warmup):
        pair.zoo_step()
        pair.ref_step()
    zoo, ref, ratios = [], [], []
    for rep in range(reps):
        first, second = (pair.zoo_step, pair.ref_step)[:: 1 if rep % 2 == 0 else -1]
        a, b = _block_ms(first, steps, device), _block_ms(second, steps, device)
        z, r = (a, b) if rep % 2 == 0 else (b, a)
        zoo.append(z)
        ref.append(r)
        ratios.append(z / r)
    return {
        "zoo_ms": statistics.median(zoo),
        "ref_ms": statistics.median(ref),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def run_entry(name: str, data: Dataset, batch: int, device: torch.device, args) -> dict:
    builder, _ = ENTRIES[name]
    torch.manual_seed(args.seed)
    pair = builder(data, batch)
    timing = time_pair(pair, device, args.reps, args.steps)
    epoch_steps = math.ceil(pair.num_data / batch)
    return {
        "model": name,
        "device": device.type,
        "batch": batch,
        **timing,
        "zoo_epoch_s": timing["zoo_ms"] * epoch_steps / 1000,
        "ref_epoch_s": timing["ref_ms"] * epoch_steps / 1000,
        "zoo_peak_mib": peak_memory_mib(pair.zoo_step, device),
        "ref_peak_mib": peak_memory_mib(pair.ref_step, device),
    }


def run_compiled(name: str, data: Dataset, batch: int, device: torch.device, args) -> dict:
    """The compiled columns of entry ``name``: :func:`~benchmarks.overhead_compiled.compiled_row`
    on the entry's pair at batch ``batch``."""
    builder, _ = ENTRIES[name]
    torch.manual_seed(args.seed)
    pair = builder(data, batch)
    return compiled_row(name, pair.spec, pair.ref_step, data, device, args.reps, args.steps)


@local_params()
def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Time every entry at every batch size; write ``overhead.csv``/``.md``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", nargs="+", choices=list(ENTRIES), default=list(ENTRIES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[100, 1024])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda")
    parser.add_argument("--reps", type=int, default=7, help="alternating repetitions")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--train-subset", type=int, default=None, help="first N examples")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--validate",
        action="store_true",
        help="Pyro's argument validation on, where zoo.fit has it by default (validate=True: "
        "a run's first steps, which the warm-up takes; before issue 19 every step)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--out", default=None, help="default: benchmarks/results/overhead (-compiled)"
    )
    parser.add_argument("--note", default="", help="a line for the report (e.g. machine load)")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="instead: undo each speed-up in turn on SparseVD LeNet-300-100 (ablation.csv/.md)",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="instead: the compiled columns (compile=True against torch.compile of the "
        "hand-written step, and against the eager one; overhead-compiled.csv/.md)",
    )
    args = parser.parse_args(argv)
    if args.reps < 1 or args.steps < 1:
        parser.error("--reps and --steps must be at least 1")
    if args.out is None:
        args.out = "benchmarks/results/overhead" + ("-compiled" if args.compiled else "")
    devices = args.devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if args.ablation:
        return _ablation(args, argv, devices)
    rows, run = [], run_compiled if args.compiled else run_entry
    with torch_threads(args.threads), pyro.validation_enabled(args.validate):
        for device_name in devices:
            device = resolve_device(device_name)
            loaded: dict[str, Dataset] = {}
            for name in args.models:
                source = ENTRIES[name][1]
                if source not in loaded:
                    loaded[source] = load_data(source, args.data_dir, device, args.train_subset)
                for batch in args.batch_sizes:
                    batch = min(batch, loaded[source].num_train)
                    rows.append(run(name, loaded[source], batch, device, args))
                    print(f"{name} {device.type} B={batch}: {rows[-1]}", flush=True)
    table = pd.DataFrame(rows)
    if args.compiled:
        print(report(table, args.out, argv, args.reps, args.steps, args.note))
    else:
        _report(table, args, argv, devices)
    return table


def _ablation(args, argv, devices) -> pd.DataFrame:
    rows = []
    with torch_threads(args.threads), pyro.validation_enabled(False):
        for device_name in devices:
            device = resolve_device(device_name)
            data = load_data("fashion-mnist", args.data_dir, device, args.train_subset)
            for batch in args.batch_sizes:
                for name in ABLATIONS:
                    torch.manual_seed(args.seed)
                    timing = time_pair(
                        ablation_pair(name, data, batch), device, args.reps, args.steps
                    )
                    rows.append(
                        {
                            "undone": name,
                            "device": device.type,
                            "batch": batch,
                            "now_ms": timing["zoo_ms"],
                            "undone_ms": timing["ref_ms"],
                            "now / undone": timing["ratio"],
                            "min": timing["ratio_min"],
                            "max": timing["ratio_max"],
                        }
                    )
                    print(f"{name} {device.type} B={batch}: {timing['ratio']:.3f}")
    table = pd.DataFrame(rows)
    md = header("Ablation of the zoo's speed-ups (SparseVD LeNet-300-100)", device, __name__, argv)
    md = md.replace("python -m __main__", "python -m benchmarks.overhead")
    md += (
        "The zoo's training step against the same step with one speed-up undone, "
        f"{args.reps} repetitions of alternating blocks of {args.steps} steps; medians of the "
        "per-repetition ratios (below 1: the speed-up helps). Pyro validation off except in "
        "its own row.\n\n"
    )
    if args.note:
        md += f"Note: {args.note}\n\n"
    md += markdown_table(table) + "\n"
    write_results(Path(args.out), "ablation", table, md)
    print(md)
    return table


def _report(table: pd.DataFrame, args, argv, devices) -> None:
    md = header(
        "Zoo overhead against hand-written PyTorch", resolve_device(devices[-1]), __name__, argv
    )
    if __name__ != "benchmarks.overhead":  # run as a script
        md = md.replace("python -m __main__", "python -m benchmarks.overhead")
    md += (
        f"Per model and batch size: {args.reps} repetitions of alternating blocks of "
        f"{args.steps} steps (zoo, reference, order alternating), after 3 warm-up steps of each; "
        "medians (ratio: median of the per-repetition ratios, with their range). Zoo step: "
        "`zoo.Trainer.step()`, the step `zoo.fit` takes with the entry's training defaults "
        "(next minibatch of the epoch's device-resident permutation, batch transform, KL "
        "annealing, forward, backward, finite loss and gradient guard, clipping if set, Adam, "
        "lr scheduler, post-step hook). Reference step: random device-resident minibatch, "
        "forward, backward, finite-gradient check, Adam. Epoch: step time x ceil(N / B). "
        "Peak: memory allocated "
        "during one step. Pyro validation: "
        + ("on" if args.validate else "off (zoo.fit's validate=False)")
        + ". Target (issue 8): ratio <= 1.10 on CPU, <= 1.25 on GPU.\n\n"
    )
    if args.note:
        md += f"Note: {args.note}\n\n"
    md += markdown_table(table) + "\n"
    met = table.assign(
        target=[1.10 if d == "cpu" else 1.25 for d in table["device"]],
    )
    misses = met[met["ratio"] > met["target"]]
    md += "\n## Target\n\n"
    if misses.empty:
        md += "Every measured ratio meets the target.\n"
    for _, row in misses.iterrows():
        md += (
            f"- MISSED: {row['model']} on {row['device']}, batch {row['batch']}: "
            f"{row['ratio']:.3f} > {row['target']:.2f}\n"
        )
    for name, why in MISSING.items():
        md += f"- not measured: {name} ({why})\n"
    if "cuda" not in devices:
        md += "- not measured: CUDA (no GPU in this run)\n"
    write_results(Path(args.out), "overhead", table, md)
    print(md)


if __name__ == "__main__":
    main()
