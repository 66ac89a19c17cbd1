"""Where the trainer runs Pyro's validation: the first steps, evaluation, and a diverged step.

Pyro's validation checks every distribution's arguments, every observed value's support and
every trace's shapes, at every call: on a small net it was more than half of a training step
(2.8 ms of 4.9 ms for a 64-100-100-10 mean-field MLP at batch 100, issue 19).  Its errors are
of two kinds, and the trainer catches both without paying for it at every step:

* mistakes in the model or the data (a label outside the classes, a shape the plate does not
  expect, an unreparameterized site): they show at the first step, so :class:`Trainer` runs
  its first :data:`VALIDATED_STEPS` steps (of every run, resumed ones included) with
  validation, and every evaluation;
* parameters gone bad (NaN, a negative scale) in the middle of a run: without validation they
  surface as a non-finite loss or gradient, and then :func:`diagnose` computes the same
  minibatch's loss again with validation, so the error names the distribution that refused its
  parameters, as it did when every step was validated.

``TrainConfig(validate=False)`` turns all of it off; Pyro's global setting
(``pyro.enable_validation``) still rules where the trainer validates.

Usage::

    from zoo.train.validation import VALIDATED_STEPS, diagnose, step_validation
    with step_validation(validate=True, steps_taken=0):   # Pyro's setting as it is
        loss = elbo.loss_and_grads(model, guide, x, y)
    with step_validation(validate=True, steps_taken=VALIDATED_STEPS):   # off
        ...
    diagnose(model, guide, x, y, elbo=elbo, n=n)     # "a distribution got ..." or None
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import pyro

from zoo.train.checkpoint import rng_preserved

__all__ = [
    "INVALID",
    "VALIDATED_STEPS",
    "diagnose",
    "eval_validation",
    "invalid_values",
    "step_validation",
]

#: Steps of every run (resumed ones included) taken with Pyro's validation.
VALIDATED_STEPS = 2
#: What Pyro's distributions say when they refuse their arguments.
INVALID = "found invalid values"


def step_validation(
    validate: bool, steps_taken: int, first: float = VALIDATED_STEPS
) -> contextlib.AbstractContextManager:
    """Pyro's validation for a training step: as Pyro has it for the ``first`` steps of a run
    with ``validate``, off otherwise.

    :param validate: the run's ``TrainConfig.validate`` (``False`` under DDP as well).
    :param steps_taken: steps this trainer has taken so far.
    :param first: how many steps to validate (``math.inf``: every one, as before issue 19).
    """
    if validate and steps_taken < first:
        return contextlib.nullcontext()
    return pyro.validation_enabled(False)


def eval_validation(validate: bool) -> contextlib.AbstractContextManager:
    """Pyro's validation for an evaluation: as Pyro has it with ``validate``, off without."""
    return contextlib.nullcontext() if validate else pyro.validation_enabled(False)


def invalid_values(exc: ValueError) -> str | None:
    """The divergence a validated step's ``ValueError`` reports, or ``None`` for another
    error (the user's, passed on)."""
    if INVALID not in str(exc):
        return None
    return "a distribution got invalid parameters: " + str(exc).split(":")[0]


def diagnose(model: Callable, guide: Callable, *args: Any, elbo: Any, n: int) -> str | None:
    """Why a step without validation gave a non-finite loss or gradient: its loss computed
    again by ``elbo`` (with ``num_data=n``), with Pyro's validation on, from a random state
    put back afterwards.

    :returns: ``"a distribution got invalid parameters: ..."`` when one refuses them, else
        ``None`` (the non-finite value is then the diagnosis; also when validation was on).
    """
    if pyro.infer.util.is_validation_enabled():
        return None  # the step was validated: nothing more to learn from it
    try:
        with rng_preserved(), pyro.validation_enabled(True), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pyro warns on the NaN loss it may compute
            elbo.differentiable_loss(model, guide, *args, num_data=n)
    except ValueError as exc:
        return invalid_values(exc)
    return None
