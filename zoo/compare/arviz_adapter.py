"""The ArviZ adapter: NumPy arrays in, plain results out, on ArviZ 0.x and 1.x alike.

This is the only module of the zoo that imports ArviZ.  ArviZ 0.x (Python 3.10-3.11) and 1.x
(Python >= 3.12, split into ``arviz_base``, ``arviz_stats`` and ``arviz_plots``) differ in names
and return types; the functions here take NumPy arrays and hide the difference:

* :func:`inference_data` -- ``InferenceData`` (ArviZ 0.x) or ``DataTree`` (ArviZ 1.x) with the
  groups ``log_likelihood``, ``observed_data`` and ``posterior``.
* :func:`loo`, :func:`waic`, :func:`compare_elpd` -- ArviZ's PSIS-LOO (Vehtari, Gelman & Gabry
  2017), WAIC (Watanabe 2010; on ArviZ 1.x, which has none, :func:`waic_from_log_lik`, the same
  formulas as ArviZ 0.x's) and stacking weights (Yao et al. 2018, "Using stacking to average
  Bayesian predictive distributions"), with every Pareto-k warning kept in the result.
* :func:`held_out_elpd` -- ``sum_i log mean_s p(y_i | theta_s)`` on a test split, with its
  standard error.
* :func:`psis_smooth`, :func:`psis_khat`, :func:`khat_verdict` -- PSIS's smoothed weights,
  the Pareto k of importance ratios and its reading.
* :func:`mcmc_diagnostics`, :func:`mcmc_inference_data` -- R-hat, bulk ESS and ArviZ's
  container of MCMC chains.
* :func:`plot_compare` -- ``arviz.plot_compare`` as a PNG.

It imports neither torch nor the rest of the zoo but :mod:`zoo.elpd` (NumPy alone: the result
type, WAIC's formulas, the held-out elpd), so it can be loaded alone from its file (with the
repository on the path) and checked on either ArviZ
(``tests/zoo/compare/test_compare_arviz1.py`` does so on ArviZ 1.x).

Usage::

    import numpy as np
    from zoo.compare.arviz_adapter import compare_elpd, inference_data, loo

    log_lik = np.random.default_rng(0).normal(-1.0, 0.3, (400, 60))  # (S draws, N points)
    result = loo(inference_data(log_lik, observed=np.zeros(60)))
    print(result.elpd, result.se, result.summary())  # the summary lists Pareto-k warnings
    table = compare_elpd({"a": result, "b": result})
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zoo.elpd import (
    CONSTANT_DRAWS,
    KHAT_GOOD,
    KHAT_OK,
    ElpdResult,
    held_out_elpd,
    held_out_summary,
    waic_from_log_lik,
)

__all__ = [
    "OBS",
    "RHAT_OK",
    "arviz_major",
    "compare_elpd",
    "explain_constant_draws",
    "import_arviz",
    "inference_data",
    "khat_verdict",
    "loo",
    "mcmc_diagnostics",
    "mcmc_inference_data",
    "plot_compare",
    "psis_khat",
    "psis_smooth",
    "record_warnings",
    "waic",
]

#: Rank-normalized split R-hat above this means the chains disagree (Vehtari et al. 2021).
RHAT_OK = 1.01

#: The variable name of the observations in ``log_likelihood`` and ``observed_data``.
OBS = "obs"


def import_arviz() -> Any:
    """The ``arviz`` module, imported without its 0.23 announcement of the 1.0 refactor."""
    with warnings.catch_warnings():
        # ArviZ 0.23 announces its 1.0 refactor with a FutureWarning at import, once a day.
        # It concerns ArviZ's own API, which this adapter pins per major version.
        warnings.filterwarnings(
            "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
        )
        import arviz

    return arviz


def arviz_major() -> int:
    """The installed ArviZ's major version: 0 (one package) or 1 (arviz_base/stats/plots)."""
    return int(import_arviz().__version__.split(".")[0])


def record_warnings(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """Run an ArviZ function and return its result with the text of every warning it raised.

    ArviZ reports unreliable estimates (Pareto k above its threshold, WAIC's variance check)
    through ``warnings``; they are kept here and surfaced in the results, never dropped.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [" ".join(str(w.message).split()) for w in caught]


def _dataset(variables: Mapping[str, tuple[tuple[str, ...], np.ndarray]], coords=None) -> Any:
    import xarray as xr

    return xr.Dataset(
        {name: (dims, np.asarray(value)) for name, (dims, value) in variables.items()},
        coords=coords,
    )


def inference_data(
    log_lik: np.ndarray,
    observed: np.ndarray,
    posterior: Mapping[str, np.ndarray] | None = None,
    posterior_dims: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    *,
    num_chains: int = 1,
    posterior_predictive: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Any:
    """ArviZ's container for one model: ``InferenceData`` on ArviZ 0.x, ``DataTree`` on 1.x.

    :param log_lik: ``log p(y_i | theta_s)``, shape ``(S, N)`` (``S = num_chains x draws``,
        chain-major, as Pyro's MCMC returns them).
    :param observed: the observations, ``(N, ...)``.
    :param posterior: named per-draw quantities, each ``(S, ...)``; a draw index alone when
        empty, since ArviZ reads the number of chains from the posterior group.
    :param posterior_dims: for a ``(S, K)`` entry, its dimension name and ``K`` labels.
    :param posterior_predictive: draws of ``y``, ``(S, N)``, if wanted.
    :param attrs: attributes stored on every group (model, guide, data).
    :raises ValueError: when the shapes disagree.
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    observed = np.asarray(observed)
    if log_lik.ndim != 2:
        raise ValueError(f"log_lik must have shape (S, N), got {log_lik.shape}")
    num, n = log_lik.shape
    if num < 1 or n < 1:
        raise ValueError(f"need at least one draw and one observation, got {log_lik.shape}")
    if observed.shape[0] != n:
        raise ValueError(f"log_lik scores {n} observations but observed holds {observed.shape[0]}")
    if num % num_chains:
        raise ValueError(f"{num} draws do not split into {num_chains} chains")
    draws = num // num_chains

    def chains(a: np.ndarray) -> np.ndarray:
        return a.reshape(num_chains, draws, *a.shape[1:])

    coords: dict[str, Any] = {"obs_id": np.arange(n)}
    post = {}
    posterior = dict(posterior or {"draw_index": np.arange(num, dtype=np.float64)})
    for name, value in posterior.items():
        value = np.asarray(value)
        if value.shape[0] != num:
            raise ValueError(f"posterior {name!r} has {value.shape[0]} draws, log_lik {num}")
        extra: tuple[str, ...] = ()
        if value.ndim > 1:
            dim, labels = (posterior_dims or {}).get(name, (f"{name}_dim", None))
            extra = (dim,)
            if labels is not None:
                coords[dim] = list(labels)
        post[name] = (("chain", "draw", *extra), chains(value))
    obs_dims = ("obs_id", *(f"obs_dim_{i}" for i in range(observed.ndim - 1)))
    obs_coords = {"obs_id": coords.pop("obs_id")}
    groups = {
        "posterior": _dataset(post, coords),
        "log_likelihood": _dataset(
            {OBS: (("chain", "draw", "obs_id"), chains(log_lik))}, obs_coords
        ),
        "observed_data": _dataset({OBS: (obs_dims, observed)}, obs_coords),
    }
    if posterior_predictive is not None:
        pp = np.asarray(posterior_predictive)
        if pp.shape[:2] != (num, n):
            raise ValueError(f"posterior_predictive must be (S, N) = {(num, n)}, got {pp.shape}")
        groups["posterior_predictive"] = _dataset(
            {OBS: (("chain", "draw", "obs_id", *obs_dims[1:]), chains(pp))}, obs_coords
        )
    for ds in groups.values():
        ds.attrs.update({k: str(v) for k, v in (attrs or {}).items()})
    az = import_arviz()
    if arviz_major() >= 1:
        import xarray as xr

        return xr.DataTree.from_dict(groups)
    return az.InferenceData(**groups)


def loo(data: Any, *, reff: float | None = None) -> ElpdResult:
    """PSIS-LOO of :func:`inference_data`'s result, through ``arviz.loo(pointwise=True)``.

    Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC", Statistics and Computing 27.

    :param reff: relative efficiency of the draws, ``ESS / S``; ArviZ estimates it from the
        posterior group when omitted (1 for one chain, as for independent draws from a guide).

    Points with the same log-likelihood in every draw: see :func:`explain_constant_draws`.
    """
    values = np.asarray(data["log_likelihood"][OBS].values, dtype=np.float64)
    log_lik = values.reshape(-1, values.shape[-1])
    constant = np.ptp(log_lik, axis=0) <= CONSTANT_DRAWS
    result = _arviz_loo(_spread_constant(data, constant) if constant.any() else data, reff)
    return explain_constant_draws(result, log_lik)


def explain_constant_draws(result: ElpdResult, log_lik: np.ndarray) -> ElpdResult:
    """``result`` (PSIS-LOO of ``log_lik``, ``(S, N)``) with its points of constant draws marked.

    Where ``log p(y_i | theta_s)`` varies by at most :data:`CONSTANT_DRAWS` nats over the draws,
    the LOO term (a weighted mean of the ``p``) is ``log mean_s p(y_i | theta_s)`` within that
    tolerance, whatever the tail; ArviZ's Pareto fit degenerates there (``k = inf``, ``nan``
    terms, or on 1.x an error: :func:`loo` gives it a spread of ``CONSTANT_DRAWS / 10``).  Those
    terms, the sums and ArviZ's own result take that value, their k is ``nan`` (undefined), and
    a note replaces ArviZ's Pareto warning when these are the only points it flagged.
    """
    constant = np.ptp(log_lik, axis=0) <= CONSTANT_DRAWS
    result.constant = constant
    if not constant.any():
        return result
    flagged = ~(result.pareto_k <= result.good_k)
    if result.warning and not (flagged & ~constant).any():
        result.warning = False
        result.messages = [m for m in result.messages if "Pareto" not in m]
    if np.isfinite(result.pointwise[~constant]).all():  # NumPy's, from the degenerate fits
        result.messages = [m for m in result.messages if "encountered in" not in m]
    lppd = held_out_elpd(log_lik)[2]
    result.pareto_k = np.where(constant, np.nan, result.pareto_k)
    result.pointwise = pointwise = np.where(constant, lppd, result.pointwise)
    result.elpd, result.se = held_out_summary(pointwise)
    result.p = float(lppd.sum() - result.elpd)
    _set_raw_loo(result)
    result.messages.append(
        f"{int(constant.sum())} of {result.n_data_points} points have the same log-likelihood "
        f"in every draw (within {CONSTANT_DRAWS:g} nats: constant draws, not heavy tails): "
        "their Pareto k is undefined and their LOO term is exact to that tolerance, so they "
        "are not counted as k > 0.7"
    )
    return result


def _set_raw_loo(result: ElpdResult) -> None:
    """Write ``result``'s pointwise terms and sums into ArviZ's own result, which
    ``arviz.compare`` reads (ArviZ 0.x: ``loo_i``, ``elpd_loo``; 1.x: ``elpd_i``, ``elpd``)."""
    raw = result.raw
    if arviz_major() >= 1:
        raw.elpd_i.values[...] = result.pointwise.reshape(raw.elpd_i.shape)
        raw.elpd, raw.se, raw.p = result.elpd, result.se, result.p
        return
    raw["loo_i"].values[...] = result.pointwise.reshape(raw["loo_i"].shape)
    raw["elpd_loo"], raw["se"], raw["p_loo"] = result.elpd, result.se, result.p


def _arviz_loo(data: Any, reff: float | None) -> ElpdResult:
    """``arviz.loo(pointwise=True)`` read into an :class:`ElpdResult`, on either ArviZ."""
    az = import_arviz()
    raw, messages = record_warnings(az.loo, data, pointwise=True, var_name=OBS, reff=reff)
    one = arviz_major() >= 1

    def get(name_1x: str, name_0x: str) -> Any:
        return getattr(raw, name_1x) if one else raw[name_0x]

    return ElpdResult(
        kind="loo",
        elpd=float(get("elpd", "elpd_loo")),
        se=float(get("se", "se")),
        p=float(get("p", "p_loo")),
        n_samples=int(get("n_samples", "n_samples")),
        n_data_points=int(get("n_data_points", "n_data_points")),
        pointwise=np.asarray(get("elpd_i", "loo_i").values, dtype=np.float64).ravel(),
        pareto_k=np.asarray(get("pareto_k", "pareto_k").values, dtype=np.float64).ravel(),
        # ArviZ < 0.18 has no sample-size dependent threshold: 0.7 then
        good_k=float(get("good_k", "good_k")) if one or "good_k" in raw else KHAT_OK,
        warning=bool(get("warning", "warning")),
        messages=messages,
        raw=raw,
    )


def _spread_constant(data: Any, constant: np.ndarray) -> Any:
    """A copy of ``data`` whose constant log-likelihood columns vary by a ramp of
    ``CONSTANT_DRAWS / 10`` nats: ArviZ 1.x refuses a Pareto fit to equal values ("All tail
    values are the same"); the terms of these points are replaced afterwards anyway."""
    data = data.copy(deep=True) if arviz_major() >= 1 else data.copy()
    values = data["log_likelihood"][OBS].values
    ramp = np.linspace(0.0, CONSTANT_DRAWS / 10, values.shape[0] * values.shape[1])
    values[..., constant] += ramp.reshape(values.shape[:2])[..., None]
    return data


def waic(data: Any) -> ElpdResult:
    """WAIC (Watanabe 2010) of :func:`inference_data`'s result: ``arviz.waic(pointwise=True)``
    on ArviZ 0.x; on ArviZ 1.x, which dropped WAIC in favour of PSIS-LOO (whose Pareto k
    diagnoses its own failures, WAIC's do not), :func:`waic_from_log_lik` of the
    ``log_likelihood`` group, the same numbers.

    An ArviZ 1.x WAIC result cannot go to :func:`compare_elpd` (ArviZ 1.x compares LOO only).
    """
    az = import_arviz()
    if arviz_major() >= 1:
        log_lik = np.asarray(data["log_likelihood"][OBS].values, dtype=np.float64)
        return waic_from_log_lik(log_lik.reshape(-1, log_lik.shape[-1]))
    raw, messages = record_warnings(az.waic, data, pointwise=True, var_name=OBS)
    return ElpdResult(
        kind="waic",
        elpd=float(raw["elpd_waic"]),
        se=float(raw["se"]),
        p=float(raw["p_waic"]),
        n_samples=int(raw["n_samples"]),
        n_data_points=int(raw["n_data_points"]),
        pointwise=np.asarray(raw["waic_i"].values, dtype=np.float64).ravel(),
        pareto_k=None,
        good_k=None,
        warning=bool(raw["warning"]),
        messages=messages,
        raw=raw,
    )


def compare_elpd(results: Mapping[str, ElpdResult], method: str = "stacking") -> pd.DataFrame:
    """``arviz.compare`` of precomputed results: rank, elpd, p, elpd_diff, dse, weight, se.

    ``elpd_diff`` is the best model's elpd minus this one's (>= 0, ArviZ 0.x's sign; 1.x's
    opposite sign is flipped), ``dse`` its standard error.

    The weights are stacking weights by default (Yao, Vehtari, Simpson & Gelman 2018, "Using
    stacking to average Bayesian predictive distributions", Bayesian Analysis 13).  The frame
    is ArviZ's own, best model first, with these column names on both ArviZ versions; ArviZ's
    original frame is kept in ``attrs["arviz"]`` (for :func:`plot_compare`).

    :raises ValueError: for fewer than one result, mixed LOO and WAIC, or results over different
        numbers of observations.
    """
    if not results:
        raise ValueError("nothing to compare: pass at least one result")
    kinds = {r.kind for r in results.values()}
    if len(kinds) > 1:
        raise ValueError(f"cannot compare LOO with WAIC results: got {sorted(kinds)}")
    counts = {name: r.n_data_points for name, r in results.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(
            "the models were scored on different numbers of observations, so their elpds are "
            f"not comparable: {counts}"
        )
    az = import_arviz()
    raws = {name: r.raw for name, r in results.items()}
    if arviz_major() >= 1:
        if kinds == {"waic"}:
            raise ValueError("ArviZ 1.x compares PSIS-LOO results only: pass loo() results")
        frame, messages = record_warnings(az.compare, raws, method=method, round_to="none")
        table = pd.DataFrame(
            {
                "rank": frame["rank"],
                "elpd": frame["elpd"],
                "p": frame["p"],
                # 1.x reports model - best (<= 0); 0.x best - model: keep 0.x's sign
                "elpd_diff": 0.0 - frame["elpd_diff"],
                "dse": frame["dse"],
                "weight": frame["weight"],
                "se": frame["se"],
            }
        )
    else:
        (kind,) = kinds
        frame, messages = record_warnings(az.compare, raws, ic=kind, method=method)
        table = pd.DataFrame(
            {
                "rank": frame["rank"],
                "elpd": frame[f"elpd_{kind}"],
                "p": frame[f"p_{kind}"],
                "elpd_diff": frame["elpd_diff"],
                "dse": frame["dse"],
                "weight": frame["weight"],
                "se": frame["se"],
            }
        )
    table["warning"] = [results[name].warning for name in table.index]
    table.attrs["arviz"] = frame
    table.attrs["messages"] = messages
    return table


def psis_smooth(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ArviZ's PSIS (Vehtari et al. 2024) over the last axis, relative efficiency 1: the
    smoothed log weights, normalized, each row's Pareto ``k``, and ArviZ's warnings.  ArviZ 0.x
    takes log weights, 1.x log-likelihoods (it negates them); each gets what it expects."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    if arviz_major() >= 1:
        from arviz_stats.base import array_stats

        (smoothed, k), messages = record_warnings(array_stats.psislw, -log_weights, r_eff=1.0)
    else:
        (smoothed, k), messages = record_warnings(import_arviz().psislw, log_weights, reff=1.0)
    return np.asarray(smoothed, dtype=np.float64), np.asarray(k, dtype=np.float64), messages


def psis_khat(log_ratios: np.ndarray) -> tuple[float, list[str]]:
    """The Pareto shape ``k`` of Pareto-smoothed importance weights ``exp(log_ratios)``
    (:func:`psis_smooth` of a 1-D array).

    :returns: ``(k, warnings ArviZ raised)``.
    """
    log_ratios = np.asarray(log_ratios, dtype=np.float64)
    if log_ratios.ndim != 1 or log_ratios.size < 5:
        raise ValueError(f"need a 1-D array of at least 5 log ratios, got {log_ratios.shape}")
    _, k, messages = psis_smooth(log_ratios)
    return float(k), messages


def khat_verdict(k: float) -> str:
    """Yao et al. (2018)'s reading of a Pareto k: good, ok or unreliable."""
    if not math.isfinite(k) or k > KHAT_OK:
        return "unreliable (k > 0.7)"
    return "good (k < 0.5)" if k < KHAT_GOOD else "ok (0.5 <= k <= 0.7)"


def plot_compare(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """``arviz.plot_compare`` of :func:`compare_elpd`'s table, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az = import_arviz()
    frame = table.attrs.get("arviz", table)
    if len(frame) < 2:
        raise ValueError("plot_compare needs at least two models")
    path = Path(path)
    if arviz_major() >= 1:
        pc, _ = record_warnings(az.plot_compare, frame, backend="matplotlib")
        pc.savefig(path, dpi=120)
        plt.close(pc.get_viz("figure"))
        return path
    ax, _ = record_warnings(
        az.plot_compare, frame, insample_dev=False, figsize=(8, 1 + 0.6 * len(frame))
    )
    fig = np.atleast_1d(ax).ravel()[0].figure
    if title:
        fig.axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def mcmc_diagnostics(draws: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """The largest rank-normalized split R-hat and the smallest bulk ESS over every scalar of
    ``draws`` (each ``(chains, draws, ...)``, at least 2 chains), through ArviZ (Vehtari et al.
    2021, "Rank-normalization, folding, and localization")."""
    az = import_arviz()
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in draws.items()}
    if any(a.ndim < 2 or a.shape[0] < 2 for a in arrays.values()):
        raise ValueError("R-hat needs at least 2 chains: arrays of shape (chains, draws, ...)")
    if arviz_major() >= 1:
        from arviz_stats.base import array_stats

        r_hat, ess = [], []
        for a in arrays.values():
            flat = np.moveaxis(a.reshape(*a.shape[:2], -1), -1, 0)  # (K, chains, draws)
            r_hat.append(np.asarray(array_stats.rhat(flat)))
            ess.append(np.asarray(array_stats.ess(flat, method="bulk")))
        return float(np.max(np.concatenate(r_hat))), float(np.min(np.concatenate(ess)))
    idata = az.convert_to_inference_data(arrays)
    r_hat = az.rhat(idata).to_array().values
    ess = az.ess(idata, method="bulk").to_array().values
    return float(np.max(r_hat)), float(np.min(ess))


def mcmc_inference_data(
    chains: Mapping[str, np.ndarray], runs: Sequence[Any] = ()
) -> tuple[Any, list[str]]:
    """ArviZ's container of MCMC chains, and the text of every warning ArviZ raised making it.

    ArviZ 1.x has no Pyro converter: ``arviz.from_dict`` of ``chains`` (site ->
    ``(chains, draws, ...)``).  ArviZ 0.x: ``arviz.from_pyro`` of each of ``runs`` (Pyro ``MCMC``
    objects of one chain each, run one after another), concatenated along ``chain``.

    :raises ValueError: on ArviZ 0.x without ``runs``.
    """
    az = import_arviz()
    if arviz_major() >= 1:
        return record_warnings(az.from_dict, {"posterior": chains})
    if not runs:
        raise ValueError("ArviZ 0.x converts Pyro's MCMC runs: pass runs")
    messages: list[str] = []
    parts = []
    for mcmc in runs:
        part, m = record_warnings(az.from_pyro, mcmc, log_likelihood=False)
        parts.append(part)
        messages += m
    return (parts[0] if len(parts) == 1 else az.concat(*parts, dim="chain")), messages
