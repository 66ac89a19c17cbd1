"""The trainer: one SVI loop for every model in the zoo, with a public step.

:class:`Trainer` draws minibatches by index from tensors that stay on the device, asks a Pyro
ELBO for the loss and its gradients, and steps a torch optimizer.  It anneals the KL term,
schedules the learning rate, checkpoints atomically, resumes bit-identically on the CPU and
stops at the first non-finite loss or gradient.  :meth:`Trainer.step` is the exact step that
:meth:`Trainer.run` and :func:`fit` take, so benchmarks time what users train with.

Usage::

    from zoo import Trainer, create_model, fit, load
    data = load("digits")
    zm = create_model("ppca", data=data)
    result = fit(zm, data, num_epochs=50, lr=0.03, out_dir="runs/ppca")
    result.history.tail()

    trainer = Trainer(create_model("ppca", data=data), data, progress=False, eval_every=0)
    trainer.step()                   # one step: -ELBO / N of its minibatch
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyro
import torch
from pyro.infer.util import is_validation_enabled

from guides.amortized import reset_average_baseline
from zoo import distributed as zdist
from zoo.data import Dataset, as_dataset, fingerprint
from zoo.elbo import make_elbo
from zoo.handlers import KLAnnealing
from zoo.spec import ZooModel, check_compatible, resolve_elbo
from zoo.train import validation as zval
from zoo.train.checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    METRICS_NAME,
    atomic_save,
    atomic_write_text,
    check_resumable,
    load_checkpoint,
    rng_preserved,
    rng_state,
    set_rng_state,
)
from zoo.train.collapse import CollapseWarning, check_collapse
from zoo.train.compiled import build_compiled
from zoo.train.config import DivergenceError, FitResult, TrainConfig
from zoo.train.device import resolve_device
from zoo.train.guards import divergence_error, evaluate_test, grads_finite, params_finite
from zoo.train.rundir import claim_for_ranks, write_config
from zoo.util import local_params

__all__ = ["Trainer", "fit"]


class Trainer:
    """Train ``zm`` (in place) by SVI on ``data``; :func:`fit` is ``Trainer(...).run()``.

    The objective, per step, for a minibatch of ``B`` of the ``N`` training examples, is

        loss = -[(N / B) * sum_batch E_q log p(x_i | ...) - beta * KL(q || p)]

    where ``beta`` follows the warm-up schedule (Bowman et al. 2016; Sønderby et al. 2016) and
    is applied by scaling every latent sample site in both model and guide
    (:class:`zoo.handlers.KLAnnealing`), so it weights exactly the KL part whichever ELBO
    estimates it.  ``history`` reports ``loss / N`` per epoch.

    Its methods run with Pyro's ``module_local_params`` on (:func:`zoo.util.local_params`, a
    few microseconds per step) and leave it as they found it.  Evaluation inside the run (the
    test metrics, ``on_epoch``, the collapse check) restores the random state after it, so the
    same seed gives the same parameters whatever ``eval_every`` is.

    Building a trainer sets everything up as :func:`fit` does: it seeds Pyro, moves the model
    and data to the device, builds the ELBO, the optimizer and the scheduler, resumes from
    ``out_dir/checkpoint.pt`` when asked to, and writes ``config.json``.  With ``out_dir`` it
    first locks the folder (:mod:`zoo.train.rundir`): a folder locked by another run, or holding
    one while neither ``resume`` nor ``force`` is set, is refused; :meth:`run` releases the lock
    when it ends, exceptions included (:meth:`close` for a trainer that is only stepped).
    :meth:`step` then takes one optimizer step, :meth:`fit_epoch` the steps to the end of an
    epoch with its bookkeeping (history row, evaluation, ``on_epoch``, checkpoints), :meth:`run`
    all epochs.

    Usage::

        import time
        from zoo import Trainer, create_model, load
        data = load("digits")
        trainer = Trainer(create_model("ppca", data=data), data, progress=False, eval_every=0)
        for _ in range(3):
            trainer.step()                          # warm-up
        started = time.perf_counter()
        for _ in range(100):
            trainer.step()                          # exactly the step fit takes
        print(f"{10 * (time.perf_counter() - started):.2f} ms per step")

    :param zm: from :func:`zoo.create_model`.
    :param data: a :class:`~zoo.data.Dataset`, or a tensor of inputs (with labels ``y``).
    :param y: labels when ``data`` is a tensor.
    :param config: a :class:`TrainConfig`; the entry's training defaults for ``zm.config``
        and the data's size (:meth:`~zoo.spec.ModelSpec.training_defaults`) on top of the
        dataclass defaults when omitted.
    :param on_epoch: called with ``zm`` (in eval mode, without gradients) at the end of every
        epoch; the metrics it returns join that epoch's history row.
    :param overrides: :class:`TrainConfig` fields replacing those of ``config``.
    :raises ValueError: for bad data (non-finite values, wrong shapes, missing labels), bad
        settings, a checkpoint from a different run, or an ``out_dir`` another run holds.

    :ivar config: the run's :class:`TrainConfig`.
    :ivar device: where the model trains.
    :ivar elbo: the Pyro ELBO whose ``loss_and_grads`` each step calls (another one may be
        put in its place, e.g. by a benchmark's ablation; not under DDP, whose wrapper holds
        the first).
    :ivar compiled: the :class:`~zoo.train.compiled.CompiledStep` each step calls with
        ``compile=True``, else ``None``.
    :ivar params: the trained parameters, those of ``zm``.
    :ivar optimizer: Adam over :attr:`params`.
    :ivar scheduler: its learning-rate schedule (``lr_schedule``), stepped once per step.
    :ivar validated_steps: the steps of this trainer run with Pyro's validation (with
        ``validate``; :mod:`zoo.train.validation`).
    :ivar steps: optimizer steps taken so far (resumed runs included).
    :ivar steps_per_epoch: steps in one epoch.
    :ivar total_steps: steps in the whole run; :meth:`step` may go on past them.
    :ivar anneal: the run's :class:`zoo.handlers.KLAnnealing` (the handler a plain Pyro loop
        uses too), on the warm-up schedule of ``config``; its ``beta`` is the current step's.
    :ivar history: one dict per finished epoch.
    :ivar losses: ``-ELBO / N`` of every step this trainer took.
    """

    @local_params()
    def __init__(
        self,
        zm: ZooModel,
        data: Dataset | torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        config: TrainConfig | None = None,
        on_epoch: Callable[[ZooModel], Mapping[str, float]] | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(zm, ZooModel):
            hint = (
                "; make a network Bayesian first: zoo.from_module(net, data=data, prior=..., "
                "guide=...)"
                if isinstance(zm, torch.nn.Module)
                else ""
            )
            raise TypeError(
                f"fit takes a ZooModel (from zoo.create_model or zoo.from_module), got a "
                f"{type(zm).__name__}{hint}"
            )
        data = as_dataset(data, y)
        if config is None:
            config = TrainConfig(**zm.spec.training_defaults(zm.config, data.num_train, overrides))
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        check_compatible(zm, data)
        self.zm, self.config, self.on_epoch = zm, config, on_epoch
        self._join(resolve_device(config.device))
        self._lock = None  # out_dir's, released by run, close, garbage collection or at exit
        if self.out_dir is not None:
            self._lock = claim_for_ranks(self.out_dir, config, self.ctx, owner=self)
        try:
            self._set_up(data)
        except BaseException:
            if self._lock is not None:
                self._lock.abandon()
            raise

    def _set_up(self, data: Dataset) -> None:
        config, zm = self.config, self.zm
        # Each rank its own Monte-Carlo noise; the minibatch order is shared by all ranks.
        pyro.set_rng_seed(config.seed + self.rank)
        # Pyro keeps decaying-average baselines in its global param store, shaped by the first
        # batch: a previous run's, with other particles or another model, must not leak in.
        reset_average_baseline()
        zm.to(self.device).train()
        self._load_data(data)
        self._build_objective()
        self._build_optimizer()
        self.steps = 0
        self.history: list[dict[str, float]] = []
        self.losses: list[float] = []
        self.epoch_loss = 0.0
        self._epoch_started = time.perf_counter()
        self._perm_epoch, self._perm = -1, torch.empty(0)
        self._bar: Any = None
        self._pyro_validates, self.validated_steps = True, zval.VALIDATED_STEPS
        if config.resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.resume()
        self.ddp = None
        if self.ctx is not None:
            loss = zdist.ElboLoss(zm.model, zm.guide, self.elbo, self._model, self._guide)
            self.ddp = zdist.wrap(loss, self.ctx)
        if self.out_dir is not None and self.is_main:
            write_config(self.out_dir, zm.describe(), config, self.data.source)

    # ------------------------------------------------------------------------------ set-up

    def _join(self, device: torch.device) -> None:
        """The process group (under DDP), this rank's place in it, its device and outputs."""
        ctx = zdist.setup(device) if self.config.distributed else None
        self.ctx = ctx
        self.rank, self.world_size = (0, 1) if ctx is None else (ctx.rank, ctx.world_size)
        self.is_main = self.rank == 0  # the only rank that writes checkpoints, metrics and logs
        self.device = device if ctx is None else ctx.device
        self.out_dir = None if self.config.out_dir is None else Path(self.config.out_dir)
        self.checkpoint_path = None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def _load_data(self, data: Dataset) -> None:
        self.data = data.to(self.device)
        self.x_train = self.data.x_train
        self.y_train = self.data.y_train if self.zm.info.task != "unsupervised" else None
        self.num_data = n = self.x_train.shape[0]
        self.fingerprint = fingerprint(self.x_train, self.y_train)
        self.batch_size = batch = min(self.config.batch_size, n // self.world_size)
        if batch < 1:
            raise ValueError(f"{n} training examples cannot feed {self.world_size} ranks")
        # Under DDP every rank must take the same number of equal steps: the ragged end of each
        # epoch's permutation is left out (each epoch draws a new one).
        self.steps_per_epoch = (
            math.ceil(n / batch) if self.ctx is None else n // (self.world_size * batch)
        )
        self.total_steps = self.steps_per_epoch * self.config.num_epochs

    def _build_objective(self) -> None:
        config, zm = self.config, self.zm
        name = resolve_elbo(zm, config)
        self.elbo = make_elbo(
            name,
            num_particles=config.num_particles,
            vectorize_particles=config.vectorize_particles,
            max_plate_nesting=zm.spec.max_plate_nesting,
        )
        # The public handler, on the run's schedule: the warm-up in epochs, counted in steps.
        per_epoch = self.steps_per_epoch
        self.anneal = KLAnnealing(schedule=lambda step: config.beta(step / per_epoch))
        model, guide = zm.callables()
        if config.kl_warmup_end > 0 or config.kl_weight != 1.0:
            model, guide = self.anneal(model), self.anneal(guide)
        self._model, self._guide = model, guide
        # Lazily created parameters (autoguides) must exist before the optimizer is built.
        xb, yb = self.x_train[: self.batch_size], self.y_train
        yb = None if yb is None else yb[: self.batch_size]
        with torch.no_grad(), pyro.poutine.block():
            guide(xb, yb, num_data=self.num_data)
        args = (name, config.num_particles, config.distributed, xb, yb, self.num_data)
        self.compiled = build_compiled(zm, *args, config.cuda_graphs) if config.compile else None

    def _build_optimizer(self) -> None:
        hooks = self.zm.spec.hooks
        self.post_step, self.batch_transform = hooks.post_step, hooks.batch_transform
        self.params = list(self.zm.parameters())
        if not self.params:
            raise ValueError(f"{self.zm.name} has no trainable parameters")
        # the compiled step: also the fused (one-kernel) Adam, 0.3 ms instead of 0.9 (LeNet-300)
        fused = True if self.config.compile else None
        self.optimizer = torch.optim.Adam(self.params, lr=self.config.lr, fused=fused)
        config, per_epoch = self.config, self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: config.lr_factor(step / per_epoch)
        )

    def close(self) -> None:
        """Release ``out_dir``'s lock (:meth:`run` does it when it ends, exceptions included;
        so do garbage collection and the interpreter's exit).  Idempotent."""
        if self._lock is not None:
            self._lock.release()

    # ------------------------------------------------------------------------- checkpoints

    @local_params()
    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a checkpoint: the model's, optimizer's and scheduler's state, every
        random state, the step, the history and the unfinished epoch's loss.

        :param path: the checkpoint (or its folder); ``out_dir/checkpoint.pt`` when ``None``.
        :raises ValueError: if the checkpoint was written by another model, other settings,
            another training set (size or content) or another number of processes.
        """
        if path is None and self.checkpoint_path is None:
            raise ValueError("resume needs out_dir, the folder holding checkpoint.pt, or a path")
        path = self.checkpoint_path if path is None else path
        ckpt = load_checkpoint(path, map_location=self.device)
        check_resumable(
            ckpt, self.zm, self.config, self.num_data, self.fingerprint, self.world_size
        )
        self.zm.load_state_dict(ckpt["state"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng_ranks"][self.rank] if "rng_ranks" in ckpt else ckpt["rng"])
        self.steps, self.history = ckpt["step"], ckpt["history"]
        self.epoch_loss = ckpt["epoch_loss"]

    def save_checkpoint(self) -> None:
        """Write ``out_dir/checkpoint.pt`` atomically (rank 0; under DDP every rank must call
        it, as each hands over its random state).

        :raises ValueError: without ``out_dir``.
        """
        if self.checkpoint_path is None:
            raise ValueError("save_checkpoint needs out_dir")
        # Every rank's random state, so that a resumed run draws the noise it would have drawn.
        rngs = [rng_state()] if self.ctx is None else zdist.gather_objects(rng_state())
        if not self.is_main:
            return
        atomic_save(
            {
                "format": "zoo-checkpoint",
                "version": CHECKPOINT_VERSION,
                "model": self.zm.describe(),
                "data": self.data.source,
                "num_data": self.num_data,
                # what zoo.compare checks: the model was fitted on the data it is compared on
                "data_fingerprint": self.fingerprint,
                "train_config": dataclasses.asdict(self.config),
                "state": self.zm.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rngs[0],
                **({} if self.ctx is None else {"rng_ranks": rngs, "world_size": self.world_size}),
                "step": self.steps,
                "epoch_loss": self.epoch_loss,
                "history": self.history,
            },
            self.checkpoint_path,
        )

    def write_metrics(self) -> None:
        """Write the history so far to ``out_dir/metrics.csv`` atomically."""
        table = pd.DataFrame(self.history).to_csv(index=False)
        atomic_write_text(table, self.out_dir / METRICS_NAME)

    # ---------------------------------------------------------------------------- the step

    @property
    def validates(self) -> bool:
        """Whether the run validates (:mod:`zoo.train.validation`); never under DDP, where a
        rank refusing its parameters would leave the others waiting in the all-reduce."""
        return self.ctx is None and self.config.validate

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the training examples in ``epoch``, on the device.

        Each epoch's order comes from its own generator, so a run resumed mid-epoch sees the
        same minibatches as an unbroken one without storing the permutation; it draws nothing
        from the global random stream.
        """
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_data, generator=gen).to(self.device)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The minibatch of the next step: this rank's slice of the epoch's permutation, through
        the family's ``batch_transform`` hook (which may draw, e.g. a binarization)."""
        epoch, pos = divmod(self.steps, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm, self._perm_epoch = self.permutation(epoch), epoch
        start = (pos * self.world_size + self.rank) * self.batch_size
        idx = self._perm[start : start + self.batch_size]
        xb = self.x_train.index_select(0, idx)
        yb = None if self.y_train is None else self.y_train.index_select(0, idx)
        if self.batch_transform is not None:
            xb, yb = self.batch_transform(self.zm, xb, yb)
        return xb, yb

    @local_params()
    def backward(self, xb: torch.Tensor, yb: torch.Tensor | None) -> float:
        """Set ``beta``, zero the gradients, and compute the loss of the minibatch ``(xb, yb)``
        (``-ELBO``, not divided by ``N``) and its gradients: the ELBO's ``loss_and_grads``, or
        under DDP the ranks' averaged gradients and loss.

        :raises DivergenceError: if the loss or a gradient is not finite, or (with validation
            on) a distribution refused its parameters; nothing is updated then.
        """
        self.anneal.set_step(self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        what = None
        try:
            with warnings.catch_warnings():
                # Pyro warns on a NaN loss; the guard below turns it into an error instead.
                warnings.filterwarnings("ignore", message="Encountered NaN")
                if self.zm.spec.hooks.closed_form_step is not None:  # e.g. a VB sweep
                    loss = self.zm.spec.hooks.closed_form_step(self.zm, xb, yb, self.num_data)
                elif self.compiled is not None:  # zoo.train.compiled: one host read, here
                    loss = self.compiled.loss_and_grads(xb, yb, self.anneal.beta).item()
                elif self.ddp is None:
                    loss = self.elbo.loss_and_grads(
                        self._model, self._guide, xb, yb, num_data=self.num_data
                    )
                else:
                    local = self.ddp(xb, yb, num_data=self.num_data)
                    local.backward()  # DDP averages the gradients over the ranks
                    # the loss of the union of the ranks' minibatches (zoo.distributed)
                    loss = zdist.all_average(local).item()
        except ValueError as exc:
            # With validation on, diverged parameters surface as a distribution refusing
            # them before any loss exists; other ValueErrors are the user's and pass on.
            what = zval.invalid_values(exc)
            if what is None:
                raise
            loss = math.nan
        if what is None and not math.isfinite(loss):
            what = f"loss {loss}"
        elif what is None and not grads_finite(self.params):
            what = "a non-finite gradient"
        if what is not None and self.validates and self._pyro_validates:
            # a step without validation saw only a number: validated, the same minibatch names
            # the distribution that refused its parameters, if one does
            again = (self._model, self._guide, xb, yb)
            what = zval.diagnose(*again, elbo=self.elbo, n=self.num_data) or what
        if what is not None:
            raise self._diverged(what, self.steps)
        return loss

    def _check_params(self) -> None:
        # A finite loss and gradients may still give an overflowing update: never save it.
        if not params_finite(self.params):
            raise self._diverged("non-finite parameters after its update", self.steps - 1)

    def _diverged(self, what: str, step: int) -> DivergenceError:
        epoch, pos = divmod(step, self.steps_per_epoch)
        return divergence_error(self.zm.name, what, step, epoch, pos, self.checkpoint_path)

    def update(self) -> None:
        """Apply the gradients: clip their global norm (``clip_norm``), step the optimizer and
        the scheduler, run the family's ``post_step`` hook, and count the step."""
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.post_step is not None:
            with torch.no_grad():
                self.post_step(self.zm)
        self.steps += 1

    @local_params()
    def step(self) -> float:
        """One optimizer step, exactly as :meth:`run` takes it: :meth:`next_batch`,
        :meth:`backward` and :meth:`update` under the run's validation setting.  The loss joins
        :attr:`losses` and the epoch's running loss; the epoch's history row, evaluation and
        checkpoints are :meth:`fit_epoch`'s.

        :returns: the loss per example, ``-ELBO / N`` at the step's ``beta``.
        :raises DivergenceError: at a non-finite loss or gradient, before any update.
        """
        self._pyro_validates = is_validation_enabled()  # Pyro's own setting, for backward
        with zval.step_validation(self.validates, len(self.losses), self.validated_steps):
            xb, yb = self.next_batch()
            loss = self.backward(xb, yb)
            self.update()
        per_point = loss / self.num_data
        self.losses.append(per_point)
        self.epoch_loss += per_point
        return per_point

    # ------------------------------------------------------------------------------ epochs

    @local_params()
    def fit_epoch(self) -> dict[str, float]:
        """Take the steps to the end of the current epoch, then add its history row (with the
        test metrics every ``eval_every`` epochs and ``on_epoch``'s), write ``metrics.csv`` and
        the checkpoints ``checkpoint_every`` asks for.

        :returns: the epoch's history row.
        """
        while True:
            epoch = self.steps // self.steps_per_epoch
            per_point = self.step()
            if self._bar is not None:
                self._bar.update(1)
                if self.steps % 10 == 0 or self.steps == self.total_steps:
                    self._bar.set_postfix(elbo=f"{-per_point:.4g}", refresh=False)
            epoch_done = self.steps % self.steps_per_epoch == 0
            every = self.config.checkpoint_every
            save = self.checkpoint_path is not None and (
                (every is None and epoch_done)
                or (every is not None and self.steps % every == 0)
                or self.steps == self.total_steps
            )
            if save or epoch_done:
                self._check_params()
            row = self._end_epoch(epoch) if epoch_done else None
            if save:
                self.save_checkpoint()
            if row is not None:
                return row

    def _end_epoch(self, epoch: int) -> dict[str, float]:
        row = {
            "epoch": epoch + 1,
            "step": self.steps,
            "loss": self.epoch_loss / self.steps_per_epoch,
            "beta": self.anneal.beta,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - self._epoch_started,
        }
        every = self.config.eval_every
        if self.is_main and every and ((epoch + 1) % every == 0 or self.steps == self.total_steps):
            with zval.eval_validation(self.validates):
                row.update(evaluate_test(self.zm, self.data))
        if self.on_epoch is not None:
            self.zm.eval()
            try:
                with torch.no_grad(), rng_preserved(), zval.eval_validation(self.validates):
                    row.update(self.on_epoch(self.zm))
            finally:
                self.zm.train()
        self.history.append(row)
        self.epoch_loss = 0.0
        self._epoch_started = time.perf_counter()
        if self.out_dir is not None and self.is_main:
            self.write_metrics()
        return row

    @local_params()
    def run(self) -> FitResult:
        """Train to the end of the last epoch (from where a resumed run stopped), with a
        progress bar, and record what the model was fitted on in ``zm.fitted_on``.

        :raises DivergenceError: at the first non-finite loss or gradient; the last good
            checkpoint is kept.
        """
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total_steps,
            initial=self.steps,
            desc=self.zm.name,
            disable=not (self.config.progress and self.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        try:
            while self.steps < self.total_steps:
                self.fit_epoch()
        finally:
            self._bar.close()
            self._bar = None
            self.close()
        seconds = time.perf_counter() - started
        collapse = None
        if self.is_main:
            with rng_preserved(), zval.eval_validation(self.validates):
                collapse = check_collapse(self.zm, self.data, self.config)
        if collapse is not None:
            warnings.warn(collapse, CollapseWarning, stacklevel=3)
        self.zm.fitted_on = {
            "fingerprint": self.fingerprint,
            "num_train": self.num_data,
            "source": dict(self.data.source),
            "seconds": seconds,
        }
        return FitResult(
            history=pd.DataFrame(self.history),
            steps=self.steps,
            seconds=seconds,
            device=self.device,
            checkpoint=self.checkpoint_path,
            losses=list(self.losses),
            collapse=collapse,
        )


def fit(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    config: TrainConfig | None = None,
    on_epoch: Callable[[ZooModel], Mapping[str, float]] | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``zm`` (in place) by SVI on ``data``: ``Trainer(...).run()`` (:class:`Trainer`).

    :param zm: from :func:`zoo.create_model`.
    :param data: a :class:`~zoo.data.Dataset`, or a tensor of inputs (with labels ``y``).
    :param y: labels when ``data`` is a tensor.
    :param config: a :class:`TrainConfig`; the entry's training defaults for ``zm.config``
        and the data's size (:meth:`~zoo.spec.ModelSpec.training_defaults`) on top of the
        dataclass defaults when omitted.
    :param on_epoch: called with ``zm`` (in eval mode, without gradients) at the end of every
        epoch; the metrics it returns join that epoch's history row (e.g. training-set accuracy).
    :param overrides: :class:`TrainConfig` fields replacing those of ``config``.
    :raises ValueError: for bad data (non-finite values, wrong shapes, missing labels), bad
        settings, a checkpoint from a different run, or an ``out_dir`` that holds another run
        (without ``resume`` or ``force``) or that another run has locked.
    :raises DivergenceError: at the first non-finite loss, gradient or parameter; the last
        good checkpoint is kept.
    """
    return Trainer(zm, data, y, config=config, on_epoch=on_epoch, **overrides).run()
