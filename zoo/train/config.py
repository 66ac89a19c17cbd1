"""The settings of one SVI run, what it returns, and the error it stops with.

:class:`TrainConfig` holds every setting of :class:`zoo.train.Trainer` and :func:`zoo.fit`,
including the KL warm-up (Bowman et al. 2016; Sønderby et al. 2016) and the learning-rate
schedules (Molchanov et al. 2017 decay LeNet-300-100 linearly from half-way).

Usage::

    from zoo.train import TrainConfig
    cfg = TrainConfig(num_epochs=200, kl_warmup_start=5, kl_warmup_end=20)
    cfg.beta(12.5), cfg.lr_factor(150)          # 0.5, 1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import torch

from zoo.elbo import ELBO_NAMES
from zoo.util import check_numbers

__all__ = ["DivergenceError", "FitResult", "TrainConfig"]


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
    :param resume: continue from ``out_dir/checkpoint.pt``, which must exist (a folder
        without one, a typo say, is refused rather than trained from scratch); ``num_epochs``
        may be larger than the checkpoint's, extending the run (the KL warm-up counts absolute
        epochs; a decaying lr schedule is recomputed with the new total for the steps to come).
    :param force: replace the run ``out_dir`` holds (its ``checkpoint.pt``, ``config.json`` and
        ``metrics.csv`` are removed first); without it (or ``resume``) such a folder is refused.
    :param eval_every: epochs between evaluations of the family's metrics on the test split
        (0: never); they draw from a random state restored afterwards, so they never change
        the fit.
    :param progress: show a tqdm progress bar.
    :param validate: ``True`` runs Pyro's argument validation (its checks of every
        distribution's arguments, trace shapes and support) where it catches errors: the first
        steps of the run (:data:`zoo.train.validation.VALIDATED_STEPS`), every evaluation, and
        a step whose loss or gradient is not finite, computed again so that the error names
        the distribution that refused its parameters; the other steps skip it (it was more
        than half of a small net's step, issue 19).  Pyro's global setting still rules (on by
        default).  ``False`` turns it off for the whole run: a divergence then shows as a
        non-finite loss instead.
    :param distributed: data-parallel training over the processes ``torchrun`` started
        (:mod:`zoo.distributed`): ``batch_size`` is per rank, each rank seeds ``seed + rank``,
        gradients are averaged by DDP and only rank 0 writes.
    :param compile: run the loss and its gradients as one graph traced once and compiled by
        Inductor (:mod:`zoo.train.compiled`); refused, with the reason, for enumeration,
        score-function estimators, several particles, DDP and data-dependent control flow.
        Compiled steps skip Pyro's validation (a divergence is still diagnosed eagerly).
    :param cuda_graphs: with ``compile`` on a CUDA device, capture the traced loss and
        gradients as a CUDA graph per minibatch shape and replay it at every step
        (:mod:`zoo.train.graphs`); refused on other devices.
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
    force: bool = False
    eval_every: int = 1
    progress: bool = True
    validate: bool = True
    distributed: bool = False
    compile: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        check_numbers(self)  # nan, inf, 1.5 epochs, True: refused before the checks below
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
            problems.append(
                "need 0 <= kl_warmup_start <= kl_warmup_end, got "
                f"{self.kl_warmup_start} and {self.kl_warmup_end}"
            )
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
        elif self.resume and not (Path(self.out_dir) / "checkpoint.pt").is_file():
            problems.append(
                f"cannot resume: {self.out_dir} holds no checkpoint.pt (a typo in the folder? "
                "without resume a new run starts there)"
            )
        if self.cuda_graphs and not self.compile:
            problems.append("cuda_graphs needs compile: the graph captured is the compiled step's")
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
    """What :func:`zoo.train.fit` and :meth:`zoo.train.Trainer.run` return.

    :ivar history: one row per epoch: ``epoch, step, loss, beta, lr, seconds`` and the family's
        test metrics prefixed ``test_``.
    :ivar steps: optimizer steps taken in total (resumed runs included).
    :ivar seconds: wall time of this call.
    :ivar device: where the model trained.
    :ivar checkpoint: the final checkpoint, or ``None`` without ``out_dir``.
    :ivar losses: the loss per example, ``-ELBO / N`` at the step's ``beta``, of each step that
        this call (the trainer, for :meth:`~zoo.train.Trainer.run`) took.
    :ivar collapse: the diagnosis, cause and fix of a collapsed run (nearly every weight pruned,
        training accuracy at chance: :mod:`zoo.train.collapse`), also warned as a
        :class:`~zoo.train.CollapseWarning`; ``None`` for a healthy run or where the check
        does not apply.
    """

    history: pd.DataFrame
    steps: int
    seconds: float
    device: torch.device
    checkpoint: Path | None = None
    losses: list[float] = field(default_factory=list)
    collapse: str | None = None

    @property
    def collapsed(self) -> bool:
        """Whether the run collapsed (:attr:`collapse` holds why and what to do)."""
        return self.collapse is not None
