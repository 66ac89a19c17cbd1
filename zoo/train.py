"""One SVI loop for every model in the zoo.

The loop draws minibatches by index from tensors that stay on the device, asks a Pyro ELBO for
the loss and its gradients, and steps a torch optimizer.  It anneals the KL term, schedules the
learning rate, checkpoints atomically, resumes bit-identically on the CPU and stops at the first
non-finite loss or gradient.

The objective, per step, for a minibatch of ``B`` of the ``N`` training examples, is

    loss = -[(N / B) * sum_batch E_q log p(x_i | ...) - beta * KL(q || p)]

where ``beta`` follows the warm-up schedule (Bowman et al. 2016; Sønderby et al. 2016) and is
applied by scaling every latent sample site in both model and guide, so it weights exactly the
KL part whichever ELBO estimates it.  ``history`` reports ``loss / N`` per epoch.

Usage::

    from zoo import create_model, fit, load
    data = load("digits")
    zm = create_model("ppca", data=data)
    result = fit(zm, data, num_epochs=50, lr=0.03, out_dir="runs/ppca")
    result.history.tail()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyro
import torch

from guides.amortized import reset_average_baseline
from zoo import distributed as zdist
from zoo.data import Dataset, as_dataset, fingerprint
from zoo.elbo import ELBO_NAMES, make_elbo
from zoo.handlers import KLAnnealing
from zoo.spec import ZooModel, check_compatible, resolve_elbo

__all__ = [
    "CHECKPOINT_NAME",
    "DivergenceError",
    "FitResult",
    "TrainConfig",
    "describe_machine",
    "fit",
    "grads_finite",
    "load_checkpoint",
    "resolve_device",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
_CHECKPOINT_VERSION = 1

# Fields that may differ between a run and its resumption without changing the trajectory.
_RESUME_FREE = frozenset({"device", "progress", "out_dir", "resume", "eval_every", "validate"})


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one SVI run.

    :param num_epochs: passes over the training set.
    :param batch_size: minibatch size ``B``.
    :param lr: peak learning rate of Adam.
    :param lr_schedule: ``constant``, ``linear`` (to zero at the last epoch) or ``cosine``.
    :param lr_decay_start: fraction of training after which a decaying schedule starts
        (Molchanov et al. 2017 decay LeNet-300-100 from epoch 100 of 200: 0.5).
    :param kl_warmup_start: epoch before which ``beta = 0``.
    :param kl_warmup_end: epoch at which ``beta`` reaches ``kl_weight``, linearly (0, 0: none).
    :param kl_weight: the final ``beta`` (1 is the ELBO; other values give a beta-VAE objective).
    :param elbo: ``trace``, ``meanfield``, ``tracegraph`` or ``traceenum``; the model's default
        when ``None``.
    :param num_particles: Monte-Carlo samples per step.
    :param vectorize_particles: draw the particles in one batched pass (needs a model whose
        plates are all declared).
    :param clip_norm: clip the global gradient norm to this value (``None``: no clipping).
    :param device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    :param seed: seeds torch, numpy, ``random`` and the minibatch order.
    :param out_dir: folder for ``checkpoint.pt`` and ``metrics.csv``; nothing is written if None.
    :param checkpoint_every: steps between checkpoints; ``None`` writes one at each epoch's end.
    :param resume: continue from ``out_dir/checkpoint.pt`` when it exists.
    :param eval_every: epochs between evaluations of the family's metrics on the test split
        (0: never).
    :param progress: show a tqdm progress bar.
    :param validate: ``False`` turns Pyro's argument validation off for the run (its checks of
        every distribution's arguments, trace shapes and support, at every step: a LeNet-300-100
        step at batch 100 took 1.52x the hand-written one with them, 1.19x without, in
        ``benchmarks/results/overhead*``); a divergence then shows
        as a non-finite loss instead of a distribution refusing its parameters.  ``True``
        leaves Pyro's global setting (on by default).
    :param distributed: data-parallel training over the processes ``torchrun`` started
        (:mod:`zoo.distributed`): ``batch_size`` is per rank, each rank seeds ``seed + rank``,
        gradients are averaged by DDP and only rank 0 writes.
    """

    num_epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    lr_decay_start: float = 0.0
    kl_warmup_start: float = 0.0
    kl_warmup_end: float = 0.0
    kl_weight: float = 1.0
    elbo: str | None = None
    num_particles: int = 1
    vectorize_particles: bool = False
    clip_norm: float | None = None
    device: str = "auto"
    seed: int = 0
    out_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    eval_every: int = 1
    progress: bool = True
    validate: bool = True
    distributed: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.num_epochs < 1:
            problems.append(f"num_epochs must be >= 1, got {self.num_epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            problems.append(
                f"lr_schedule must be constant, linear or cosine, got {self.lr_schedule!r}"
            )
        if not 0 <= self.lr_decay_start < 1:
            problems.append(f"lr_decay_start must lie in [0, 1), got {self.lr_decay_start}")
        if not 0 <= self.kl_warmup_start <= self.kl_warmup_end:
            problems.append("need 0 <= kl_warmup_start <= kl_warmup_end")
        if self.kl_weight < 0:
            problems.append(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.elbo is not None and self.elbo not in ELBO_NAMES:
            problems.append(f"elbo must be one of {ELBO_NAMES}, got {self.elbo!r}")
        if self.num_particles < 1:
            problems.append(f"num_particles must be >= 1, got {self.num_particles}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            problems.append(f"clip_norm must be positive, got {self.clip_norm}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            problems.append(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.eval_every < 0:
            problems.append(f"eval_every must be >= 0, got {self.eval_every}")
        if self.resume and self.out_dir is None:
            problems.append("resume needs out_dir, the folder holding checkpoint.pt")
        if problems:
            raise ValueError("; ".join(problems))

    def beta(self, epoch: float) -> float:
        """The KL weight at a (fractional) epoch."""
        start, end = self.kl_warmup_start, self.kl_warmup_end
        if epoch >= end:
            return self.kl_weight
        if epoch < start:
            return 0.0
        return self.kl_weight * (epoch - start) / (end - start)

    def lr_factor(self, epoch: float) -> float:
        """The learning-rate multiplier at a (fractional) epoch."""
        start = self.lr_decay_start * self.num_epochs
        if self.lr_schedule == "constant" or epoch < start:
            return 1.0
        frac = (epoch - start) / (self.num_epochs - start)
        frac = min(max(frac, 0.0), 1.0)
        if self.lr_schedule == "linear":
            return 1.0 - frac
        return 0.5 * (1.0 + math.cos(math.pi * frac))


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient.

    :ivar step: the 0-based step whose loss or gradient was not finite.
    :ivar checkpoint: the last good checkpoint, left untouched, or ``None``.
    """

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class FitResult:
    """What :func:`fit` returns.

    :ivar history: one row per epoch: ``epoch, step, loss, beta, lr, seconds`` and the family's
        test metrics prefixed ``test_``.
    :ivar steps: optimizer steps taken in total (resumed runs included).
    :ivar seconds: wall time of this call.
    :ivar device: where the model trained.
    :ivar checkpoint: the final checkpoint, or ``None`` without ``out_dir``.
    :ivar losses: the loss per example, ``-ELBO / N`` at the step's ``beta``, of each step that
        this call took.
    """

    history: pd.DataFrame
    steps: int
    seconds: float
    device: torch.device
    checkpoint: Path | None = None
    losses: list[float] = field(default_factory=list)


def describe_machine(device: str | torch.device = "cpu") -> str:
    """The GPU's name on CUDA, else the CPU model and the torch threads: what results report."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{model}, {threads} torch thread{'' if threads == 1 else 's'}"


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a clear error."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.backends.cuda.is_built() else "without"
            raise ValueError(
                f"device={device!r} was asked for, but no CUDA device is available (this torch "
                f"{torch.__version__} is built {built} CUDA). Use device='cpu' or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{device!r}: only {torch.cuda.device_count()} CUDA device(s) exist")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return resolved


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],  # plain lists: weights_only loading
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a crash
    leaves either the old checkpoint or the new one, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_write_text(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`fit`.

    :raises FileNotFoundError: if there is none.
    :raises ValueError: if the file is not a zoo checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable zoo checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != "zoo-checkpoint":
        raise ValueError(f"{path} is not a zoo checkpoint")
    if ckpt.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt.get('version')} is not supported")
    return ckpt


def _check_resumable(ckpt: dict, zm: ZooModel, cfg: TrainConfig, num_data: int) -> None:
    mismatches = []
    if ckpt["model"] != zm.describe():
        mismatches.append(f"model {ckpt['model']} != {zm.describe()}")
    # a field added after the checkpoint was written counts as its default
    defaults = dataclasses.asdict(TrainConfig())
    saved = {k: v for k, v in {**defaults, **ckpt["train_config"]}.items() if k not in _RESUME_FREE}
    now = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RESUME_FREE}
    mismatches += [
        f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in now.items() if saved.get(k) != v
    ]
    if ckpt["num_data"] != num_data:
        mismatches.append(f"training set size: checkpoint {ckpt['num_data']}, now {num_data}")
    if mismatches:
        raise ValueError(
            "cannot resume: the checkpoint was written by a different run ("
            + "; ".join(mismatches)
            + "). Use the same settings, or a new out_dir."
        )


def grads_finite(params: list[torch.Tensor]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads)
    return bool(torch.isfinite(torch.stack(norms)).all())


def _evaluate_epoch(zm: ZooModel, data: Dataset) -> dict[str, float]:
    zm.eval()
    try:
        metrics = zm.evaluate(data, "test")
    finally:
        zm.train()
    return {f"test_{k}": float(v) for k, v in metrics.items()}


def fit(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    config: TrainConfig | None = None,
    on_epoch: Callable[[ZooModel], Mapping[str, float]] | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``zm`` (in place) by SVI on ``data``.

    :param zm: from :func:`zoo.create_model`.
    :param data: a :class:`~zoo.data.Dataset`, or a tensor of inputs (with labels ``y``).
    :param y: labels when ``data`` is a tensor.
    :param config: a :class:`TrainConfig`; the entry's training defaults for ``zm.config``
        (:meth:`~zoo.registry.ModelSpec.training_defaults`) on top of the dataclass defaults
        when omitted.
    :param on_epoch: called with ``zm`` (in eval mode, without gradients) at the end of every
        epoch; the metrics it returns join that epoch's history row (e.g. training-set accuracy).
    :param overrides: :class:`TrainConfig` fields replacing those of ``config``.
    :raises ValueError: for bad data (non-finite values, wrong shapes, missing labels), bad
        settings, or a checkpoint from a different run.
    :raises DivergenceError: at the first non-finite loss or gradient; the last good
        checkpoint is kept.
    """
    data = as_dataset(data, y)
    if config is None:
        config = TrainConfig(**{**zm.spec.training_defaults(zm.config), **overrides})
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    check_compatible(zm, data)
    device = resolve_device(config.device)
    ctx = zdist.setup(device) if config.distributed else None
    rank, world = (0, 1) if ctx is None else (ctx.rank, ctx.world_size)
    main = rank == 0  # the only rank that writes checkpoints, metrics and logs
    device = device if ctx is None else ctx.device
    out_dir = None if config.out_dir is None else Path(config.out_dir)
    ckpt_path = None if out_dir is None else out_dir / CHECKPOINT_NAME

    # Each rank its own Monte-Carlo noise; the minibatch order below is shared by all ranks.
    pyro.set_rng_seed(config.seed + rank)
    # Pyro keeps decaying-average baselines in its global param store, shaped by the first
    # batch: a previous run's, with other particles or another model, must not leak in.
    reset_average_baseline()
    zm.to(device).train()
    data = data.to(device)
    x_all = data.x_train
    y_all = data.y_train if zm.info.task != "unsupervised" else None
    num_data = x_all.shape[0]
    data_fingerprint = fingerprint(x_all, y_all)
    batch = min(config.batch_size, num_data // world)
    if batch < 1:
        raise ValueError(f"{num_data} training examples cannot feed {world} ranks")
    # Under DDP every rank must take the same number of equal steps: the ragged end of each
    # epoch's permutation is left out (each epoch draws a new one).
    steps_per_epoch = math.ceil(num_data / batch) if ctx is None else num_data // (world * batch)
    total_steps = steps_per_epoch * config.num_epochs

    elbo = make_elbo(
        resolve_elbo(zm, config),
        num_particles=config.num_particles,
        vectorize_particles=config.vectorize_particles,
        max_plate_nesting=zm.spec.max_plate_nesting,
    )
    anneal = KLAnnealing()
    annealing = config.kl_warmup_end > 0 or config.kl_weight != 1.0
    model, guide = zm.callables()
    if annealing:
        model, guide = anneal(model), anneal(guide)

    # Lazily created parameters (autoguides) must exist before the optimizer is built.
    with torch.no_grad(), pyro.poutine.block():
        guide(x_all[:batch], None if y_all is None else y_all[:batch], num_data=num_data)
    post_step = zm.spec.hooks.post_step
    transform = zm.spec.hooks.batch_transform
    params = list(zm.parameters())
    if not params:
        raise ValueError(f"{zm.name} has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: config.lr_factor(step / steps_per_epoch)
    )

    step = 0
    history: list[dict[str, float]] = []
    epoch_loss = 0.0
    epoch_start_time = time.perf_counter()
    if config.resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(ckpt, zm, config, num_data)
        zm.load_state_dict(ckpt["state"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("world_size", 1) != world:
            raise ValueError(
                f"cannot resume: the checkpoint was written by {ckpt.get('world_size', 1)} "
                f"process(es), this run has {world}"
            )
        _set_rng_state(ckpt["rng_ranks"][rank] if "rng_ranks" in ckpt else ckpt["rng"])
        step, history, epoch_loss = ckpt["step"], ckpt["history"], ckpt["epoch_loss"]

    ddp = None
    if ctx is not None:
        ddp = zdist.wrap(zdist.ElboLoss(zm.model, zm.guide, elbo, model, guide), ctx)

    def save_checkpoint() -> None:
        # Every rank's random state, so that a resumed run draws the noise it would have drawn.
        rngs = [_rng_state()] if ctx is None else zdist.gather_objects(_rng_state())
        if not main:
            return
        _atomic_save(
            {
                "format": "zoo-checkpoint",
                "version": _CHECKPOINT_VERSION,
                "model": zm.describe(),
                "data": data.source,
                "num_data": num_data,
                # what zoo.compare checks: the model was fitted on the data it is compared on
                "data_fingerprint": data_fingerprint,
                "train_config": dataclasses.asdict(config),
                "state": zm.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rngs[0],
                **({} if ctx is None else {"rng_ranks": rngs, "world_size": world}),
                "step": step,
                "epoch_loss": epoch_loss,
                "history": history,
            },
            ckpt_path,
        )

    def write_metrics() -> None:
        _atomic_write_text(pd.DataFrame(history).to_csv(index=False), out_dir / METRICS_NAME)

    if out_dir is not None and main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(
            json.dumps(
                {"model": zm.describe(), "train": dataclasses.asdict(config), "data": data.source},
                indent=2,
                default=str,
            )
        )

    # Each epoch's order comes from its own generator, so a run resumed mid-epoch sees the
    # same minibatches as an unbroken one without storing the permutation.
    def permutation(epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        return torch.randperm(num_data, generator=gen).to(device)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=zm.name,
        disable=not (config.progress and main),
        leave=False,
        dynamic_ncols=True,
    )
    losses: list[float] = []
    started = time.perf_counter()
    perm = permutation(step // steps_per_epoch)
    # A rank whose distribution refused its parameters would leave the others waiting in the
    # all-reduce: under DDP invalid parameters show as a NaN loss instead, which every rank sees.
    validation = (
        pyro.validation_enabled(False)
        if ctx is not None or not config.validate
        else contextlib.nullcontext()
    )
    validation.__enter__()
    try:
        while step < total_steps:
            epoch, pos = divmod(step, steps_per_epoch)
            if pos == 0:
                perm = permutation(epoch)
            start = (pos * world + rank) * batch
            idx = perm[start : start + batch]
            xb = x_all.index_select(0, idx)
            yb = None if y_all is None else y_all.index_select(0, idx)
            if transform is not None:
                xb, yb = transform(zm, xb, yb)
            anneal.beta = config.beta(step / steps_per_epoch)

            optimizer.zero_grad(set_to_none=True)
            what = None
            try:
                with warnings.catch_warnings():
                    # Pyro warns on a NaN loss; the guard below turns it into an error instead.
                    warnings.filterwarnings("ignore", message="Encountered NaN")
                    if ddp is None:
                        loss = elbo.loss_and_grads(model, guide, xb, yb, num_data=num_data)
                    else:
                        local = ddp(xb, yb, num_data=num_data)
                        local.backward()  # DDP averages the gradients over the ranks
                        # the loss of the union of the ranks' minibatches (module docstring)
                        loss = zdist.all_average(local).item()
            except ValueError as exc:
                # With validation on, diverged parameters surface as a distribution refusing
                # them before any loss exists; other ValueErrors are the user's and pass on.
                if "found invalid values" not in str(exc):
                    raise
                what = "a distribution got invalid parameters: " + str(exc).split(":")[0]
                loss = math.nan
            if what is None and not math.isfinite(loss):
                what = f"loss {loss}"
            elif what is None and not grads_finite(params):
                what = "a non-finite gradient"
            if what is not None:
                kept = (
                    f"The last good checkpoint is kept at {ckpt_path}."
                    if ckpt_path is not None and ckpt_path.exists()
                    else "No checkpoint was written before it."
                )
                raise DivergenceError(
                    f"{zm.name} diverged at step {step} (epoch {epoch}, batch {pos}): {what}. "
                    f"Training stopped. {kept} Try a lower lr, clip_norm or a KL warm-up.",
                    step,
                    ckpt_path if ckpt_path is not None and ckpt_path.exists() else None,
                )
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
            optimizer.step()
            scheduler.step()
            if post_step is not None:
                with torch.no_grad():
                    post_step(zm)
            step += 1
            per_point = loss / num_data
            losses.append(per_point)
            epoch_loss += per_point
            bar.update(1)
            if step % 10 == 0 or step == total_steps:
                bar.set_postfix(elbo=f"{-per_point:.4g}", refresh=False)

            epoch_done = step % steps_per_epoch == 0
            if epoch_done:
                row = {
                    "epoch": epoch + 1,
                    "step": step,
                    "loss": epoch_loss / steps_per_epoch,
                    "beta": anneal.beta,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - epoch_start_time,
                }
                if (
                    main
                    and config.eval_every
                    and ((epoch + 1) % config.eval_every == 0 or step == total_steps)
                ):
                    row.update(_evaluate_epoch(zm, data))
                if on_epoch is not None:
                    zm.eval()
                    try:
                        with torch.no_grad():
                            row.update(on_epoch(zm))
                    finally:
                        zm.train()
                history.append(row)
                epoch_loss = 0.0
                epoch_start_time = time.perf_counter()
                if out_dir is not None and main:
                    write_metrics()
            if ckpt_path is not None and (
                (config.checkpoint_every is None and epoch_done)
                or (config.checkpoint_every is not None and step % config.checkpoint_every == 0)
                or step == total_steps
            ):
                save_checkpoint()
    finally:
        validation.__exit__(None, None, None)
        bar.close()
    seconds = time.perf_counter() - started
    zm.fitted_on = {
        "fingerprint": data_fingerprint,
        "num_train": num_data,
        "source": dict(data.source),
        "seconds": seconds,
    }
    return FitResult(
        history=pd.DataFrame(history),
        steps=step,
        seconds=seconds,
        device=device,
        checkpoint=ckpt_path,
        losses=losses,
    )
