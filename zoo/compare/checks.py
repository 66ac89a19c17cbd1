"""What a comparison checks before any work: models it can compare, memory it can hold.

:func:`check_comparable` refuses models that cannot share a table: not a fitted model, no
pointwise log-likelihood, built for other data, observing different things (``p(y | x)``
against ``p(x)``), no posterior draws (every parameter a point estimate, as PPCA's, so that
every draw gives the same likelihood and PSIS-LOO is undefined), or fitted on other data.

:func:`estimate_compare_memory` estimates the memory of the pointwise log-likelihood arrays:
PSIS-LOO (Vehtari, Gelman & Gabry 2017) needs each model's whole ``S x N_train`` float64
matrix, kept in its ArviZ container, and ArviZ copies it while computing LOO (measured: three
copies on ArviZ 0.23; four are budgeted).  The test split is scored in chunks of draws of about
:data:`CHUNK_BYTES` (a running log-sum-exp and mean), so its ``S x N_test`` matrix never exists.
:func:`check_memory` refuses up front what does not fit in :func:`available_memory`, with the
estimate and the number of draws that would fit.

Usage::

    from zoo.compare.checks import check_comparable, check_memory
    check_comparable({"a": zm_a, "b": zm_b}, data)
    check_memory({"a": 200, "b": 200}, data.num_train, data.num_test)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.compare.nuts import NUTSReference
from zoo.compare.pointwise import log_likelihood_hook
from zoo.util import local_params

if TYPE_CHECKING:
    from zoo.data import Dataset
    from zoo.spec import ZooModel

__all__ = [
    "ARVIZ_COPIES",
    "CHUNK_BYTES",
    "WARN_BYTES",
    "CompareMemoryWarning",
    "MemoryEstimate",
    "available_memory",
    "check_comparable",
    "check_memory",
    "check_posterior_draws",
    "chunk_draws",
    "estimate_compare_memory",
]

#: The draws of one chunk hold about this many bytes of log-likelihoods (64 MiB).
CHUNK_BYTES = 64 * 2**20
#: Copies of the ``S x N_train`` matrix ArviZ makes while computing PSIS-LOO: 3.0 measured with
#: tracemalloc on ArviZ 0.23 (WAIC: 1.3), one more budgeted for other versions.
ARVIZ_COPIES = 4
#: Where the available memory is unknown, warn above this estimate (2 GiB).
WARN_BYTES = 2 * 2**30
#: The chunk's tensors: the hook's rows, their stacked copy and the slice written out.
_CHUNK_COPIES = 3


class CompareMemoryWarning(UserWarning):
    """The comparison may not fit in memory (the available memory is unknown)."""


def _model_of(m: Any) -> ZooModel:
    return m.zm if isinstance(m, NUTSReference) else m


@local_params()
def check_posterior_draws(zm: ZooModel, x: Any, y: Any = None) -> None:
    """Raise ``ValueError`` unless ``zm``'s guide draws a global latent variable (one outside
    the plate ``data`` over the examples): without one every posterior draw gives the same
    likelihood, so PSIS-LOO is undefined.  Cheap: one guide draw on the examples ``x``."""
    import torch
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    with torch.no_grad():
        trace = poutine.trace(zm.guide).get_trace(x, y)
    globals_ = [
        name
        for name in trace.stochastic_nodes
        if not site_is_subsample(trace.nodes[name])  # a plate's index site
        and not any(frame.name == "data" for frame in trace.nodes[name]["cond_indep_stack"])
    ]
    if not globals_:
        raise ValueError(
            f"{zm.name} ({zm.guide_name}) has no global latent variable: its parameters are "
            "point estimates, so every posterior draw gives the same likelihood and PSIS-LOO "
            "is undefined; compare models with latent global variables (e.g. bpca rather "
            "than ppca)"
        )


def check_comparable(
    models: Mapping[str, Any], data: Dataset, *, fitted: bool = True
) -> dict[str, str]:
    """Raise ``ValueError`` unless ``models`` (label -> ZooModel or NUTSReference) can be
    compared on ``data``: each has a pointwise log-likelihood and posterior draws, fits the
    data, all observe the same thing and, when ``fitted``, each was fitted on ``data``.

    :returns: what each observes, ``"y"`` or ``"x"``.
    """
    from zoo.spec import ZooModel, check_compatible

    observes = {}
    for label, m in models.items():
        if not isinstance(m, ZooModel | NUTSReference):
            raise ValueError(
                f"{label!r} is a {type(m).__name__}; compare takes fitted ZooModels "
                "(zoo.create_model + zoo.fit) and NUTSReferences"
            )
        zm = _model_of(m)
        log_likelihood_hook(zm)
        check_compatible(zm, data)
        observes[label] = zm.spec.observes
    if len(set(observes.values())) > 1:
        shown = {label: f"p({o} | ...)" for label, o in observes.items()}
        raise ValueError(
            f"the models observe different things ({shown}); their elpds are not comparable"
        )
    for m in models.values():
        if isinstance(m, ZooModel):  # a NUTS reference brings its draws
            zm = m
            x = data.x_train[:2].to(zm.device)
            y = data.y_train[:2].to(zm.device) if zm.spec.observes == "y" else None
            check_posterior_draws(zm, x, y)
    if fitted:
        _check_fitted_on(models, data)
    return observes


def _check_fitted_on(models: Mapping[str, Any], data: Dataset) -> None:
    """Each model was fitted on ``data``'s training split (the fingerprint zoo.fit took)."""
    from zoo.data import fingerprint

    expected: dict[bool, str] = {}
    for label, m in models.items():
        zm = _model_of(m)
        # the fingerprint zoo.fit took: the targets count wherever the data's task has them
        supervised = zm.info.task != "unsupervised"
        if supervised not in expected:  # hash the training split once per kind, not per model
            expected[supervised] = fingerprint(data.x_train, data.y_train if supervised else None)
        if isinstance(m, NUTSReference):
            seen, size = m.fingerprint, "its NUTS run"
        elif m.fitted_on is None:
            raise ValueError(f"{label!r} has not been fitted: call zoo.fit on it first")
        else:
            seen, size = m.fitted_on["fingerprint"], f"{m.fitted_on['num_train']} examples"
        if seen != expected[supervised]:
            raise ValueError(
                f"{label!r} was fitted on different data ({size}) than the training split "
                f"given to compare ({data.num_train} examples); compare models on the data "
                "they were fitted on"
            )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a comparison needs for its pointwise log-likelihoods.

    :ivar kept: every model's ``S x N_train`` float64 matrix, kept in its ArviZ container.
    :ivar arviz: ArviZ's copies of the largest one while it computes PSIS-LOO.
    :ivar chunk: one chunk of draws on the training and test examples (torch tensors).
    """

    kept: int
    arviz: int
    chunk: int

    @property
    def peak(self) -> int:
        """The most held at once: everything kept, ArviZ's copies and a chunk."""
        return self.kept + self.arviz + self.chunk


def chunk_draws(num_examples: int) -> int:
    """Draws per chunk: about :data:`CHUNK_BYTES` of float64 log-likelihoods, at least one."""
    return max(1, CHUNK_BYTES // (8 * max(1, num_examples)))


def estimate_compare_memory(
    num_draws: Mapping[str, int], num_train: int, num_test: int
) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of comparing models with ``num_draws`` draws each (label ->
    ``S``) on ``num_train`` training and ``num_test`` test examples."""
    if not num_draws:
        return MemoryEstimate(0, 0, 0)
    n_all = num_train + num_test
    largest = max(num_draws.values())
    chunk = min(largest, chunk_draws(n_all)) * n_all * 8 * _CHUNK_COPIES
    kept = sum(num_draws.values()) * num_train * 8
    return MemoryEstimate(kept=kept, arviz=ARVIZ_COPIES * largest * num_train * 8, chunk=chunk)


def available_memory(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of ``meminfo`` (Linux),
    else the free physical pages (``os.sysconf``), else ``None`` (unknown)."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB, meaning KiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages if pages > 0 else None


def _size(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.1f} GB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MB"


def check_memory(
    num_draws: Mapping[str, int], num_train: int, num_test: int, flag: str = "num_samples"
) -> MemoryEstimate:
    """Refuse a comparison whose :func:`estimate_compare_memory` exceeds
    :func:`available_memory`, naming the estimate, the most draws that would fit and ``flag``
    (``--num-samples`` for the CLI); warn (:class:`CompareMemoryWarning`) above
    :data:`WARN_BYTES` where the available memory is unknown.

    :raises ValueError: when the estimate exceeds the available memory.
    """
    estimate = estimate_compare_memory(num_draws, num_train, num_test)
    available = available_memory()
    what = (
        f"comparing {len(num_draws)} model(s) with up to {max(num_draws.values(), default=0)} "
        f"draws each on {num_train} training examples needs about {_size(estimate.peak)} for "
        "the pointwise log-likelihoods"
    )
    if available is None:
        if estimate.peak > WARN_BYTES:
            warnings.warn(
                f"{what}, and the available memory is unknown; lower {flag} if it fails",
                CompareMemoryWarning,
                stacklevel=2,
            )
        return estimate
    if estimate.peak > available:
        # every model's draws scale alike: the S that fits, from the per-draw bytes
        per_draw = estimate.peak / max(num_draws.values())
        fits = int(available // per_draw)
        advice = f"at most about {fits} would fit" if fits >= 2 else "even 2 draws do not fit"
        raise ValueError(
            f"{what}, more than the {_size(available)} available; lower {flag} ({advice})"
        )
    return estimate
