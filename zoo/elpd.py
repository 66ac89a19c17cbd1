"""Summaries of pointwise log predictive densities, in NumPy alone: the result of PSIS-LOO or
WAIC (:class:`ElpdResult`), WAIC itself, and the elpd of held-out points.

PSIS-LOO (Vehtari, Gelman & Gabry 2017) is ArviZ's, through :mod:`zoo.compare.arviz_adapter`;
what needs no ArviZ lives here, at the bottom of the zoo's layers, importing neither torch nor
the rest of the zoo, so that the adapter can still be loaded alone from its file on ArviZ 1.x.

Usage::

    import numpy as np
    from zoo.elpd import held_out_elpd, waic_from_log_lik

    log_lik = np.random.default_rng(0).normal(-1.0, 0.3, (400, 60))  # (S draws, N points)
    elpd, se, pointwise = held_out_elpd(log_lik)
    print(waic_from_log_lik(log_lik).elpd)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CONSTANT_DRAWS",
    "KHAT_GOOD",
    "KHAT_OK",
    "WAIC_VAR_WARNING",
    "ElpdResult",
    "held_out_elpd",
    "held_out_summary",
    "waic_from_log_lik",
]

#: Pareto-k thresholds of Vehtari et al. (2024) and Yao et al. (2018): below 0.5 the importance
#: sampling estimate is reliable, up to 0.7 usable, above 0.7 not to be trusted.
KHAT_GOOD, KHAT_OK = 0.5, 0.7

#: Log-likelihoods that differ by at most this many nats over the draws are constant draws:
#: the point's LOO term is exact to this tolerance and its Pareto k undefined.
CONSTANT_DRAWS = 1e-8


@dataclass
class ElpdResult:
    """PSIS-LOO or WAIC of one model, read out of ArviZ's result (kept as :attr:`raw`).

    :ivar kind: ``"loo"`` or ``"waic"``.
    :ivar elpd: the estimated expected log pointwise predictive density, a sum over points.
    :ivar se: its standard error.
    :ivar p: the effective number of parameters (``p_loo``, ``p_waic``).
    :ivar pointwise: the per-observation elpd, shape ``(N,)``.
    :ivar pareto_k: PSIS-LOO's Pareto shape per observation (``None`` for WAIC).
    :ivar good_k: ArviZ's threshold for ``S`` draws, ``min(1 - 1/log10 S, 0.7)``.
    :ivar warning: ArviZ's own flag: some ``k > good_k`` (LOO) or some variance of the
        log predictive density above 0.4 (WAIC).
    :ivar messages: the text of every warning ArviZ raised while computing it, and the zoo's
        note on points with constant draws.
    :ivar constant: LOO only: the points whose log-likelihood is the same in every draw
        (within :data:`CONSTANT_DRAWS`), ``(N,)`` booleans.  Their Pareto k is undefined
        (ArviZ reports ``inf``): there is no tail to fit, not a heavy one, and their LOO term
        is exact to that tolerance.  They are not counted in :attr:`n_high_k` nor in
        :attr:`warning`.
    """

    kind: str
    elpd: float
    se: float
    p: float
    n_samples: int
    n_data_points: int
    pointwise: np.ndarray
    pareto_k: np.ndarray | None
    good_k: float | None
    warning: bool
    messages: list[str]
    raw: Any = field(repr=False)
    constant: np.ndarray | None = field(default=None, repr=False)

    def _varying_k(self) -> np.ndarray:
        """The Pareto k of the points whose draws differ (all of them when none is constant)."""
        return self.pareto_k if self.constant is None else self.pareto_k[~self.constant]

    @property
    def n_constant(self) -> int:
        """Observations whose log-likelihood is the same in every draw (k undefined, LOO exact)."""
        return 0 if self.constant is None else int(np.sum(self.constant))

    @property
    def n_high_k(self) -> int:
        """Observations with ``k > 0.7``, where PSIS-LOO is not to be trusted; points with
        constant draws (:attr:`constant`) are not counted."""
        if self.pareto_k is None:
            return 0
        # a k ArviZ could not estimate (nan, inf) from varying draws is no better than a large one
        return int(np.sum(~(self._varying_k() <= KHAT_OK)))

    def summary(self) -> str:
        """The warnings in a few words, for a table cell; empty when there are none."""
        parts = []
        if self.pareto_k is not None:
            if self.n_high_k:
                parts.append(f"{self.n_high_k}/{self.n_data_points} k>0.7")
            over = int(np.sum(~(self._varying_k() <= self.good_k)))
            if self.good_k is not None and self.good_k < KHAT_OK and over > self.n_high_k:
                parts.append(f"{over} k>{self.good_k:.2f}")
            if self.n_constant:
                parts.append(f"{self.n_constant} constant draws (k undefined, LOO exact)")
        elif self.warning:
            parts.append("var(log p) > 0.4")
        if self.warning:
            parts.append("ArviZ warned")
        return "; ".join(parts)


#: ArviZ 0.x's warning when some ``var_s log p(y_i | theta_s)`` exceeds 0.4 (Vehtari, Gelman &
#: Gabry 2017, section 2.2), whitespace normalized as :func:`record_warnings` keeps it.
WAIC_VAR_WARNING = (
    "For one or more samples the posterior variance of the log predictive densities exceeds "
    "0.4. This could be indication of WAIC starting to fail. See "
    "http://arxiv.org/abs/1507.04544 for details"
)


def waic_from_log_lik(log_lik: np.ndarray) -> ElpdResult:
    """WAIC (Watanabe 2010) of ``(S, N)`` pointwise log-likelihoods, computed here.

    ``elpd_waic = sum_i [lppd_i - var_s log p(y_i | theta_s)]`` with ``lppd_i = log (1/S) sum_s
    p(y_i | theta_s)`` (a log-sum-exp) and the variance over draws dividing by ``S``;
    ``p_waic = sum_i var_s log p(y_i | theta_s)``; ``se = sqrt(N var_i(waic_i))``; the warning
    flag is set (with ArviZ 0.x's text) when some variance exceeds 0.4.  The same formulas as
    ArviZ 0.x's ``az.waic`` (tested against it to 1e-8 in ``tests/zoo/compare``), so ArviZ 1.x,
    which has no WAIC, gives 0.x's numbers.  ``raw`` holds the numbers as a dict.

    :param log_lik: ``log p(y_i | theta_s)``, ``(S, N)`` (chains flattened into ``S``).
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    if log_lik.ndim != 2 or 0 in log_lik.shape:
        raise ValueError(f"log_lik must have shape (S, N) with S, N >= 1, got {log_lik.shape}")
    num, n = log_lik.shape
    top = log_lik.max(axis=0)
    lppd_i = top + np.log(np.exp(log_lik - top).sum(axis=0)) - math.log(num)
    var_i = log_lik.var(axis=0)
    waic_i = lppd_i - var_i
    warn = bool(np.any(var_i > 0.4))
    elpd, se, p = float(waic_i.sum()), float(math.sqrt(n * waic_i.var())), float(var_i.sum())
    return ElpdResult(
        kind="waic",
        elpd=elpd,
        se=se,
        p=p,
        n_samples=num,
        n_data_points=n,
        pointwise=waic_i,
        pareto_k=None,
        good_k=None,
        warning=warn,
        messages=[WAIC_VAR_WARNING] if warn else [],
        raw={"elpd_waic": elpd, "se": se, "p_waic": p, "waic_i": waic_i, "warning": warn},
    )


def held_out_elpd(log_lik: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The elpd of held-out points, ``sum_i log (1/S) sum_s p(y_i | theta_s)``, and its s.e.

    The standard error is ``sqrt(N var_i)`` of the pointwise terms, the same convention as
    PSIS-LOO's (Vehtari, Gelman & Gabry 2017, eq. 23).

    :param log_lik: ``(S, N)`` log-likelihoods of the held-out points.
    :returns: ``(elpd, se, pointwise)``.
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    if log_lik.ndim != 2 or 0 in log_lik.shape:
        raise ValueError(f"log_lik must have shape (S, N) with S, N >= 1, got {log_lik.shape}")
    top = log_lik.max(axis=0)
    pointwise = top + np.log(np.mean(np.exp(log_lik - top), axis=0))
    return (*held_out_summary(pointwise), pointwise)


def held_out_summary(pointwise: np.ndarray) -> tuple[float, float]:
    """:func:`held_out_elpd`'s sum and standard error of the pointwise terms
    ``log (1/S) sum_s p(y_i | theta_s)`` (computed elsewhere, e.g. over chunks of draws)."""
    pointwise = np.asarray(pointwise, dtype=np.float64)
    n = pointwise.shape[0]
    return float(pointwise.sum()), float(math.sqrt(n * pointwise.var()))
