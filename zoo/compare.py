"""Model comparison with ArviZ: pointwise log-likelihoods, PSIS-LOO, WAIC, stacking, NUTS.

This is the only module of the zoo that imports ArviZ.  It turns fitted guides into ArviZ
objects and ranks models by their expected log pointwise predictive density (elpd):

* :func:`pointwise_log_likelihood` -- ``log p(y_i | x_i, theta_s)`` for ``S`` draws ``theta_s``
  of the guide, each draw shared by every example, shape ``(S, N)``.
* :func:`inference_data` -- ``InferenceData`` (ArviZ 0.x) or ``DataTree`` (ArviZ 1.x) with the
  groups ``log_likelihood``, ``observed_data`` and ``posterior`` (named low-dimensional
  quantities only, such as weight norms, never the weights themselves).
* :func:`loo`, :func:`waic`, :func:`compare_elpd` -- ArviZ's PSIS-LOO (Vehtari, Gelman & Gabry
  2017), WAIC (Watanabe 2010) and stacking weights (Yao et al. 2018, "Using stacking to average
  Bayesian predictive distributions"), with every Pareto-k warning kept in the result.
* :func:`held_out_elpd` -- ``sum_i log mean_s p(y_i | theta_s)`` on a test split, with its
  standard error.
* :func:`vi_diagnostic` -- the Pareto-k of the importance ratios ``p(theta, D) / q(theta)``
  (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it work?"): how far to trust a guide.
* :func:`nuts_reference` -- NUTS (Hoffman & Gelman 2014) through Pyro's MCMC on the same model,
  the exact posterior a guide can be ranked against in the same table.
* :func:`compare_models` -- all of it for a set of fitted models, as one table.

Usage::

    from zoo import compare_models, create_model, fit, load
    data = load("digits")
    models = {}
    for guide in ("meanfield", "mc-dropout"):
        zm = create_model("logreg", data=data, guide=guide, seed=0)
        fit(zm, data, num_epochs=50, progress=False)
        models[guide] = zm
    result = compare_models(models, data, num_samples=200)
    print(result.table)              # elpd_loo, se, p_loo, weight, warnings, test_elpd, ...
    result.idata["meanfield"]        # the InferenceData behind its row

ArviZ 0.x (Python 3.10-3.11) and 1.x (Python >= 3.12, split into ``arviz_base``,
``arviz_stats`` and ``arviz_plots``) differ in names and return types; the functions in the
first part of this module take NumPy arrays and hide the difference.  They import neither torch
nor the rest of the zoo, so they can be checked alone on either ArviZ.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

    from zoo.data import Dataset
    from zoo.spec import PointwiseDraws, ZooModel

__all__ = [
    "KHAT_GOOD",
    "KHAT_OK",
    "RHAT_OK",
    "ComparisonResult",
    "ElpdResult",
    "NUTSReference",
    "VIDiagnostic",
    "arviz_major",
    "check_nuts_model",
    "compare_elpd",
    "compare_models",
    "held_out_elpd",
    "inference_data",
    "khat_verdict",
    "loo",
    "nuts_reference",
    "plot_compare",
    "pointwise_log_likelihood",
    "psis_khat",
    "to_inference_data",
    "vi_diagnostic",
    "waic",
]

#: Pareto-k thresholds of Vehtari et al. (2024) and Yao et al. (2018): below 0.5 the importance
#: sampling estimate is reliable, up to 0.7 usable, above 0.7 not to be trusted.
KHAT_GOOD, KHAT_OK = 0.5, 0.7

#: Rank-normalized split R-hat above this means the chains disagree (Vehtari et al. 2021).
RHAT_OK = 1.01

#: The variable name of the observations in ``log_likelihood`` and ``observed_data``.
OBS = "obs"


# ============================================================================================
# The ArviZ adapter: NumPy arrays in, plain results out, on ArviZ 0.x and 1.x alike.


def _import_arviz() -> Any:
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
    return int(_import_arviz().__version__.split(".")[0])


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
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
    az = _import_arviz()
    if arviz_major() >= 1:
        import xarray as xr

        return xr.DataTree.from_dict(groups)
    return az.InferenceData(**groups)


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
    :ivar messages: the text of every warning ArviZ raised while computing it.
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

    @property
    def n_high_k(self) -> int:
        """Observations with ``k > 0.7``, where PSIS-LOO is not to be trusted."""
        if self.pareto_k is None:
            return 0
        # a k ArviZ could not estimate (nan, inf) is no better than a large one
        return int(np.sum(~(self.pareto_k <= KHAT_OK)))

    def summary(self) -> str:
        """The warnings in a few words, for a table cell; empty when there are none."""
        parts = []
        if self.pareto_k is not None:
            if self.n_high_k:
                parts.append(f"{self.n_high_k}/{self.n_data_points} k>0.7")
            over = int(np.sum(self.pareto_k > self.good_k))
            if self.good_k is not None and self.good_k < KHAT_OK and over > self.n_high_k:
                parts.append(f"{over} k>{self.good_k:.2f}")
        elif self.warning:
            parts.append("var(log p) > 0.4")
        if self.warning:
            parts.append("ArviZ warned")
        return "; ".join(parts)


def _log_lik_array(data: Any) -> np.ndarray:
    return np.asarray(data["log_likelihood"][OBS].values)


def loo(data: Any, *, reff: float | None = None) -> ElpdResult:
    """PSIS-LOO of :func:`inference_data`'s result, through ``arviz.loo(pointwise=True)``.

    Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC", Statistics and Computing 27.

    :param reff: relative efficiency of the draws, ``ESS / S``; ArviZ estimates it from the
        posterior group when omitted (1 for one chain, as for independent draws from a guide).
    """
    az = _import_arviz()
    if arviz_major() >= 1:
        raw, messages = _call(az.loo, data, pointwise=True, var_name=OBS, reff=reff)
        return ElpdResult(
            kind="loo",
            elpd=float(raw.elpd),
            se=float(raw.se),
            p=float(raw.p),
            n_samples=int(raw.n_samples),
            n_data_points=int(raw.n_data_points),
            pointwise=np.asarray(raw.elpd_i.values, dtype=np.float64).ravel(),
            pareto_k=np.asarray(raw.pareto_k.values, dtype=np.float64).ravel(),
            good_k=float(raw.good_k),
            warning=bool(raw.warning),
            messages=messages,
            raw=raw,
        )
    raw, messages = _call(az.loo, data, pointwise=True, var_name=OBS, reff=reff)
    return ElpdResult(
        kind="loo",
        elpd=float(raw["elpd_loo"]),
        se=float(raw["se"]),
        p=float(raw["p_loo"]),
        n_samples=int(raw["n_samples"]),
        n_data_points=int(raw["n_data_points"]),
        pointwise=np.asarray(raw["loo_i"].values, dtype=np.float64).ravel(),
        pareto_k=np.asarray(raw["pareto_k"].values, dtype=np.float64).ravel(),
        # ArviZ < 0.18 has no sample-size dependent threshold: 0.7 then
        good_k=float(raw["good_k"]) if "good_k" in raw else KHAT_OK,
        warning=bool(raw["warning"]),
        messages=messages,
        raw=raw,
    )


def waic(data: Any) -> ElpdResult:
    """WAIC (Watanabe 2010) through ``arviz.waic(pointwise=True)``, on ArviZ 0.x.

    :raises NotImplementedError: on ArviZ 1.x, which dropped WAIC in favour of PSIS-LOO (whose
        Pareto k diagnoses its own failures, WAIC's do not).
    """
    az = _import_arviz()
    if arviz_major() >= 1:
        raise NotImplementedError(
            "ArviZ 1.x has no WAIC (it recommends PSIS-LOO, which diagnoses itself); use loo()"
        )
    raw, messages = _call(az.waic, data, pointwise=True, var_name=OBS)
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
    az = _import_arviz()
    raws = {name: r.raw for name, r in results.items()}
    if arviz_major() >= 1:
        frame, messages = _call(az.compare, raws, method=method, round_to="none")
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
        frame, messages = _call(az.compare, raws, ic=kind, method=method)
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
    n = pointwise.shape[0]
    return float(pointwise.sum()), float(math.sqrt(n * pointwise.var())), pointwise


def psis_khat(log_ratios: np.ndarray) -> tuple[float, list[str]]:
    """The Pareto shape ``k`` of Pareto-smoothed importance weights ``exp(log_ratios)``.

    ArviZ's PSIS (Vehtari, Simpson, Gelman, Yao & Gabry 2024) over the last axis, with relative
    efficiency 1 (independent draws).  ArviZ 0.x takes log weights, 1.x log-likelihoods (it
    negates them); both are given what makes the weights ``exp(log_ratios)``.

    :returns: ``(k, warnings ArviZ raised)``.
    """
    log_ratios = np.asarray(log_ratios, dtype=np.float64)
    if log_ratios.ndim != 1 or log_ratios.size < 5:
        raise ValueError(f"need a 1-D array of at least 5 log ratios, got {log_ratios.shape}")
    az = _import_arviz()
    if arviz_major() >= 1:
        from arviz_stats.base import array_stats

        (_, k), messages = _call(array_stats.psislw, -log_ratios, r_eff=1.0)
    else:
        (_, k), messages = _call(az.psislw, log_ratios, reff=1.0)
    return float(np.asarray(k)), messages


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

    az = _import_arviz()
    frame = table.attrs.get("arviz", table)
    if len(frame) < 2:
        raise ValueError("plot_compare needs at least two models")
    path = Path(path)
    if arviz_major() >= 1:
        pc, _ = _call(az.plot_compare, frame, backend="matplotlib")
        pc.savefig(path, dpi=120)
        plt.close(pc.get_viz("figure"))
        return path
    ax, _ = _call(az.plot_compare, frame, insample_dev=False, figsize=(8, 1 + 0.6 * len(frame)))
    fig = np.atleast_1d(ax).ravel()[0].figure
    if title:
        fig.axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ============================================================================================
# Posterior draws of zoo models: torch from here on, imported lazily so that the adapter above
# can be used (and tested) without it.


def _check_num_samples(num_samples: Any) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise ValueError(f"num_samples must be an integer, got {num_samples!r}")
    if num_samples < 1:
        raise ValueError(
            f"num_samples must be at least 1, got {num_samples}: a guide with no draws gives no "
            "pointwise log-likelihood"
        )
    return int(num_samples)


def _hook(zm: ZooModel) -> Callable[..., PointwiseDraws]:
    hook = zm.spec.hooks.log_likelihood
    if hook is None:
        raise ValueError(
            f"{zm.name} has no pointwise log-likelihood (its registry entry sets no "
            "log_likelihood hook), so it cannot be compared with ArviZ"
        )
    return hook


def _draws(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    num_samples: int,
    batch_size: int | None = None,
    samples: Mapping[str, torch.Tensor] | None = None,
) -> PointwiseDraws:
    import torch

    hook = _hook(zm)
    device = zm.device
    x = x.to(device)
    y = None if y is None else y.to(device)
    was_training = zm.model.training
    zm.eval()
    try:
        with torch.no_grad():
            out = hook(zm, x, y, num_samples, batch_size, samples)
    finally:
        zm.train(was_training)
    expected = num_samples if samples is None else len(next(iter(samples.values())))
    if tuple(out.log_lik.shape) != (expected, len(x)):
        raise RuntimeError(f"{zm.name}: log_likelihood hook returned {tuple(out.log_lik.shape)}")
    return out


def pointwise_log_likelihood(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 200,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``log p(y_i | x_i, theta_s)`` for ``S = num_samples`` draws of the guide, ``(S, N)``.

    Every example is scored under the same global draw ``theta_s``, which PSIS-LOO and WAIC
    assume; the local reparameterization used in training (independent noise per example) is
    therefore not used here.  The computation runs in batches on the model's device under
    ``no_grad`` and returns float64 on the CPU.  For an unsupervised model (PPCA) ``y`` is
    ``None`` and the score is ``log p(x_i | theta_s)``.

    :raises ValueError: for ``num_samples < 1``, mismatched ``x`` and ``y``, or a registry entry
        without a ``log_likelihood`` hook.
    """
    num_samples = _check_num_samples(num_samples)
    _check_targets(zm, x, y)
    return _draws(zm, x, y, num_samples, batch_size).log_lik


def _check_targets(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None) -> None:
    """The entry can be scored, and a supervised one has one target per example."""
    _hook(zm)
    if zm.spec.observes == "y":
        if y is None:
            raise ValueError(f"{zm.name} is a {zm.info.task} model: pass the targets y")
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")


def _observed(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None) -> np.ndarray:
    target = x.reshape(len(x), -1) if zm.spec.observes == "x" else y
    return target.detach().cpu().numpy()


def _to_idata(
    zm: ZooModel,
    draws: PointwiseDraws,
    x: torch.Tensor,
    y: torch.Tensor | None,
    attrs: Mapping[str, Any],
    num_chains: int = 1,
) -> Any:
    return inference_data(
        draws.log_lik.numpy(),
        _observed(zm, x, y),
        {k: v.numpy() for k, v in draws.posterior.items()},
        draws.dims,
        num_chains=num_chains,
        attrs=attrs,
    )


def to_inference_data(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 200,
    batch_size: int | None = None,
) -> Any:
    """ArviZ's container (:func:`inference_data`) for ``num_samples`` guide draws on ``(x, y)``.

    Usage::

        idata = to_inference_data(zm, data.x_train, data.y_train)
        az.loo(idata)   # or zoo.compare.loo(idata), which keeps ArviZ's warnings
    """
    num_samples = _check_num_samples(num_samples)
    _check_targets(zm, x, y)
    draws = _draws(zm, x, y, num_samples, batch_size)
    return _to_idata(zm, draws, x, y, {"model": zm.name, "guide": zm.guide_name})


# --------------------------------------------------------------------------------------------
# The VI diagnostic of Yao, Vehtari, Simpson & Gelman (2018)


class DiagnosticUndefined(ValueError):
    """The VI diagnostic does not apply to this model or guide (the message says why)."""


@dataclass
class VIDiagnostic:
    """The Pareto-k diagnostic of a guide (Yao, Vehtari, Simpson & Gelman 2018).

    :ivar khat: Pareto shape of the importance ratios ``p(theta, D) / q(theta)``.
    :ivar verdict: < 0.5 good, 0.5-0.7 ok, > 0.7 the guide is far from the posterior.
    :ivar log_ratios: ``log p(theta_s, D) - log q(theta_s)`` per draw, ``(S,)``.
    :ivar messages: warnings ArviZ raised.
    """

    khat: float
    verdict: str
    log_ratios: np.ndarray = field(repr=False)
    messages: list[str] = field(default_factory=list)


def _base_dist(fn: Any) -> Any:
    import pyro.distributions as dist

    while isinstance(fn, dist.Independent | dist.ExpandedDistribution | dist.MaskedDistribution):
        fn = fn.base_dist
    return fn


def _global_latents(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None):
    """One guide draw and the model's trace replayed on it, after checking the diagnostic
    applies: global latents only, each with a proper prior and a guide density."""
    from pyro import poutine

    from guides.dropout import DropoutWeight
    from zoo.priors import ImproperLogUniform

    guide_trace = poutine.trace(zm.guide).get_trace(x, y)
    latents = {
        name: node
        for name, node in guide_trace.nodes.items()
        if node["type"] == "sample" and not node["is_observed"]
    }
    local = [n for n, node in latents.items() if node["cond_indep_stack"]]
    if local:
        raise DiagnosticUndefined(
            f"{zm.name} ({zm.guide_name}) has local latent variables {local}: the importance "
            "ratio p(theta, D) / q(theta) needs them integrated out, which is defined here only "
            "for models whose latent variables are all global"
        )
    if not latents:
        raise DiagnosticUndefined(
            f"{zm.name} ({zm.guide_name}) has no global latent variable: its parameters are "
            "point estimates, so there is no posterior approximation to diagnose"
        )
    for name, node in latents.items():
        if isinstance(_base_dist(node["fn"]), DropoutWeight):
            raise DiagnosticUndefined(
                f"{zm.name} ({zm.guide_name}): MC dropout's q({name}) is a mixture of point "
                "masses with no density, so log q(theta) and the importance ratio are undefined"
            )
    model_trace = poutine.trace(poutine.replay(zm.model, trace=guide_trace)).get_trace(x, y)
    for name in latents:
        if isinstance(_base_dist(model_trace.nodes[name]["fn"]), ImproperLogUniform):
            raise DiagnosticUndefined(
                f"{zm.name} ({zm.guide_name}): the log-uniform prior on {name} is improper "
                "(it has no normalizer), so log p(theta, D) and the importance ratio are "
                "undefined; the diagnostic needs a proper prior such as Normal"
            )
    return latents


def vi_diagnostic(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    num_samples: int = 200,
    batch_size: int = 2000,
) -> VIDiagnostic:
    """How far to trust a guide: the PSIS Pareto k of ``log p(theta_s, D) - log q(theta_s)``.

    Yao, Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: Evaluating variational
    inference", ICML.  ``theta_s ~ q``; ``log p(theta, D)`` is the prior plus the likelihood of
    the whole training split, summed in batches.  ``k < 0.5``: the guide is close to the
    posterior; ``0.5 <= k <= 0.7``: usable; ``k > 0.7``: far from it (importance sampling from q
    would not recover the posterior).  Mean-field guides of large networks are usually > 0.7.

    Point estimates (the BNNs' biases, a regressor's noise) are held at their fitted values: the
    diagnostic is about ``q`` over the latent weights given them.

    :raises ValueError: when it is undefined (:class:`DiagnosticUndefined`): an improper prior
        (log-uniform), a guide without a density (MC dropout), local latent variables (PPCA),
        no latent variables; or for ``num_samples < 5``.
    """
    import torch
    from pyro import poutine

    from zoo.data import as_dataset
    from zoo.spec import check_compatible

    num_samples = _check_num_samples(num_samples)
    if num_samples < 5:
        raise ValueError(f"the Pareto fit needs num_samples >= 5, got {num_samples}")
    ds = as_dataset(data, y)
    check_compatible(zm, ds)
    device = zm.device
    x_all = ds.x_train.to(device)
    y_all = None if ds.y_train is None or zm.info.task == "unsupervised" else ds.y_train.to(device)
    was_training = zm.model.training
    zm.eval()
    try:
        with torch.no_grad():
            latents = _global_latents(zm, x_all[:2], None if y_all is None else y_all[:2])
            ratios = []
            for _ in range(num_samples):
                guide_trace = poutine.trace(zm.guide).get_trace(x_all[:1])
                values = {n: guide_trace.nodes[n]["value"] for n in latents}
                log_q = sum(guide_trace.nodes[n]["fn"].log_prob(v).sum() for n, v in values.items())
                model = poutine.condition(zm.model, data=values)
                log_joint = 0.0
                for start in range(0, len(x_all), batch_size):
                    xb = x_all[start : start + batch_size]
                    yb = None if y_all is None else y_all[start : start + batch_size]
                    trace = poutine.trace(model).get_trace(xb, yb)
                    for name, node in trace.nodes.items():
                        if node["type"] != "sample":
                            continue
                        lp = node["fn"].log_prob(node["value"]).sum()
                        if name in values:
                            # the prior once, on the first batch
                            log_joint = log_joint + (lp if start == 0 else 0.0)
                        else:
                            log_joint = log_joint + lp
                ratios.append(float(log_joint - log_q))
    finally:
        zm.train(was_training)
    log_ratios = np.asarray(ratios)
    if not np.all(np.isfinite(log_ratios)):
        raise ValueError(f"{zm.name}: non-finite log importance ratios; is the fit diverged?")
    k, messages = psis_khat(log_ratios)
    return VIDiagnostic(khat=k, verdict=khat_verdict(k), log_ratios=log_ratios, messages=messages)


# --------------------------------------------------------------------------------------------
# NUTS as the reference posterior


def mcmc_diagnostics(draws: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """The largest rank-normalized split R-hat and the smallest bulk ESS over every scalar of
    ``draws`` (each ``(chains, draws, ...)``, at least 2 chains), through ArviZ (Vehtari et al.
    2021, "Rank-normalization, folding, and localization")."""
    az = _import_arviz()
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


@dataclass
class NUTSReference:
    """NUTS draws of a zoo model's latent weights, usable wherever a fitted model is.

    :ivar zm: the model sampled; its point estimates (the biases) were held at their values.
    :ivar samples: site -> ``(chains * draws, ...)`` tensors, chain-major.
    :ivar idata: ArviZ's conversion of the chains (``az.from_pyro`` on 0.x, ``from_dict`` on
        1.x, which has no Pyro converter).
    :ivar r_hat_max: the largest R-hat over all weights (< 1.01 is the usual bar).
    :ivar ess_bulk_min: the smallest bulk effective sample size.
    :ivar divergences: divergent transitions after warm-up, all chains.
    """

    zm: ZooModel
    samples: dict[str, torch.Tensor]
    idata: Any
    num_chains: int
    num_samples: int
    warmup: int
    seconds: float
    r_hat_max: float
    ess_bulk_min: float
    divergences: int
    fingerprint: str
    messages: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.zm.name

    @property
    def guide_name(self) -> str:
        return "nuts"


def check_nuts_model(
    zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None, max_latent_dim: int = 5000
) -> None:
    """Raise ``ValueError`` unless NUTS can sample ``zm``: global latents only, proper priors,
    at most ``max_latent_dim`` dimensions.  Cheap: one guide draw on the examples ``x``."""
    import torch
    from pyro import poutine

    from zoo.priors import ImproperLogUniform

    with torch.no_grad():
        # replayed on a guide draw: an improper prior cannot be sampled, only recognized
        guide_trace = poutine.trace(zm.guide).get_trace(x, y)
        trace = poutine.trace(poutine.replay(zm.model, trace=guide_trace)).get_trace(x, y)
    latents = {
        n: node
        for n, node in trace.nodes.items()
        if node["type"] == "sample" and not node["is_observed"]
    }
    if not latents or any(node["cond_indep_stack"] for node in latents.values()):
        raise ValueError(
            f"{zm.name}: the NUTS reference needs a model whose latent variables are all global"
        )
    for n, node in latents.items():
        if isinstance(_base_dist(node["fn"]), ImproperLogUniform):
            raise ValueError(
                f"{zm.name}: the log-uniform prior on {n} is improper; NUTS needs a proper prior"
            )
    dim = sum(node["value"].numel() for node in latents.values())
    if dim > max_latent_dim:
        raise ValueError(
            f"{zm.name} has {dim} latent dimensions; the NUTS reference is for small models "
            f"(max_latent_dim={max_latent_dim})"
        )


def nuts_reference(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    num_samples: int = 250,
    warmup: int = 200,
    num_chains: int = 2,
    max_tree_depth: int = 8,
    max_latent_dim: int = 5000,
    jit_compile: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> NUTSReference:
    """Sample ``zm``'s posterior with NUTS (Hoffman & Gelman 2014) through ``pyro.infer.MCMC``.

    The model is the zoo model itself, with its prior: for the BNN family the Normal prior on
    the weights.  Its point-estimated parameters (the BNN biases) are *held fixed* at their
    current values, normally those of an SVI fit of the same entry, so NUTS samples exactly the
    posterior over the weights that the guide approximates, given the same biases.  Each chain
    starts at the guide's mean weights (when the guide has them) and runs ``warmup`` adaptation
    steps (step size and diagonal mass matrix) before ``num_samples`` draws.  The chains run one
    after another in this process (``num_chains >= 2`` gives R-hat a second chain).

    :param max_tree_depth: caps the leapfrog steps per draw at ``2**max_tree_depth``.
    :param max_latent_dim: refuse larger models: NUTS is the reference for small ones.
    :raises ValueError: for local latent variables, an improper prior, too many latent
        dimensions, bad counts, or data the model was not built for.
    """
    import pyro
    import torch
    from pyro.infer import MCMC, NUTS
    from pyro.infer.autoguide.initialization import init_to_uniform, init_to_value

    from zoo.data import as_dataset, fingerprint
    from zoo.spec import check_compatible

    for name, value, least in (("num_samples", num_samples, 1), ("warmup", warmup, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not isinstance(num_chains, int) or num_chains < 1:
        raise ValueError(f"num_chains must be an integer >= 1, got {num_chains!r}")
    ds = as_dataset(data, y)
    check_compatible(zm, ds)
    device = zm.device
    x_all = ds.x_train.to(device)
    y_all = None if zm.info.task == "unsupervised" else ds.y_train.to(device)
    check_nuts_model(zm, x_all[:2], None if y_all is None else y_all[:2], max_latent_dim)

    init = init_to_uniform
    if hasattr(zm.guide, "mean_weights"):
        means = {k: v.detach() for k, v in zm.guide.mean_weights(threshold=None).items()}
        init = init_to_value(values=means)
    params = [p for p in zm.model.parameters() if p.requires_grad]
    was_training = zm.model.training
    zm.eval()
    chains: list[dict[str, torch.Tensor]] = []
    divergences = 0
    runs = []
    messages: list[str] = []
    started = time.perf_counter()
    try:
        # The point estimates are constants of the target density: no gradient flows to them.
        for p in params:
            p.requires_grad_(False)
        for chain in range(num_chains):
            pyro.set_rng_seed(seed + chain)
            kernel = NUTS(
                zm.model,
                max_tree_depth=max_tree_depth,
                init_strategy=init,
                jit_compile=jit_compile,
                ignore_jit_warnings=jit_compile,
            )
            mcmc = MCMC(
                kernel, num_samples=num_samples, warmup_steps=warmup, disable_progbar=not progress
            )
            mcmc.run(x_all, y_all)
            chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
            divergences += sum(len(v) for v in mcmc.diagnostics()["divergences"].values())
            runs.append(mcmc)
    finally:
        for p in params:
            p.requires_grad_(True)
        zm.train(was_training)
    seconds = time.perf_counter() - started
    samples = {k: torch.cat([c[k] for c in chains]) for k in chains[0]}
    stacked = {k: torch.stack([c[k] for c in chains]).cpu().numpy() for k in chains[0]}
    az = _import_arviz()
    if arviz_major() >= 1:
        idata, msg = _call(az.from_dict, {"posterior": stacked})
    else:
        # ArviZ's Pyro converter, one run per chain (our chains run one after another)
        msg = []
        parts = []
        for mcmc in runs:
            part, m = _call(az.from_pyro, mcmc, log_likelihood=False)
            parts.append(part)
            msg += m
        idata = parts[0] if len(parts) == 1 else az.concat(*parts, dim="chain")
    messages += msg
    r_hat, ess = (math.nan, math.nan)
    if num_chains >= 2:
        (r_hat, ess), msg = _call(mcmc_diagnostics, stacked)
        messages += msg
    return NUTSReference(
        zm=zm,
        samples=samples,
        idata=idata,
        num_chains=num_chains,
        num_samples=num_samples,
        warmup=warmup,
        seconds=seconds,
        r_hat_max=r_hat,
        ess_bulk_min=ess,
        divergences=divergences,
        fingerprint=fingerprint(x_all, y_all),
        messages=messages,
    )


# --------------------------------------------------------------------------------------------
# compare: every fitted model, one table

#: The table's columns, in order.
COLUMNS = (
    "model",
    "guide",
    "elpd_loo",
    "se",
    "p_loo",
    "weight",
    "warnings",
    "test_elpd",
    "test_elpd_se",
    "accuracy",
    "ece",
    "sparsity",
    "fit_seconds",
    "vi_khat",
)


@dataclass
class ComparisonResult:
    """What :func:`compare` returns.

    :ivar table: one row per model, best ``elpd_loo`` first, columns :data:`COLUMNS`, index the
        models' labels.
    :ivar comparison: :func:`compare_elpd`'s frame (ArviZ's ranks, ``elpd_diff``, ``dse``,
        stacking weights).
    :ivar idata: the ArviZ container (training split) of each model.
    :ivar loo: PSIS-LOO of each model, with ArviZ's Pareto k per observation and warnings.
    :ivar waic: WAIC of each model (ArviZ 0.x only; empty on 1.x).
    :ivar vi: the VI diagnostic of each model, or why it does not apply.
    :ivar test_log_lik: ``(S, N_test)`` log-likelihoods of the test split per model.
    :ivar predictive: the test split's posterior predictive mean per model (class
        probabilities for classifiers).
    :ivar y_test: the test targets.
    :ivar nuts: the NUTS references among the models.
    """

    table: pd.DataFrame
    comparison: pd.DataFrame
    idata: dict[str, Any]
    loo: dict[str, ElpdResult]
    waic: dict[str, ElpdResult]
    vi: dict[str, VIDiagnostic | str]
    test_log_lik: dict[str, np.ndarray]
    predictive: dict[str, np.ndarray]
    y_test: np.ndarray | None
    nuts: dict[str, NUTSReference]

    def messages(self) -> dict[str, list[str]]:
        """Every warning ArviZ raised, per model."""
        out: dict[str, list[str]] = {}
        for label in self.table.index:
            msgs = list(self.loo[label].messages)
            if label in self.waic:
                msgs += [f"WAIC: {m}" for m in self.waic[label].messages]
            vi = self.vi.get(label)
            if isinstance(vi, VIDiagnostic):
                msgs += [f"VI diagnostic: {m}" for m in vi.messages]
            if label in self.nuts:
                msgs += [f"NUTS: {m}" for m in self.nuts[label].messages]
            out[label] = msgs
        return out


def _labelled(models: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(models, Mapping):
        items = [(str(k), v) for k, v in models.items()]
    else:
        items = []
        for m in models:
            label = f"{m.name}:{m.guide_name}"
            taken = {k for k, _ in items}
            label_n, i = label, 2
            while label_n in taken:
                label_n, i = f"{label}#{i}", i + 1
            items.append((label_n, m))
    if not items:
        raise ValueError("compare needs at least one fitted model")
    return dict(items)


def _check_models(labelled: Mapping[str, Any], ds: Dataset) -> None:
    from zoo.data import fingerprint
    from zoo.spec import ZooModel, check_compatible

    observes = {}
    for label, m in labelled.items():
        if not isinstance(m, ZooModel | NUTSReference):
            raise ValueError(
                f"{label!r} is a {type(m).__name__}; compare takes fitted ZooModels "
                "(zoo.create_model + zoo.fit) and NUTSReferences"
            )
        zm = m.zm if isinstance(m, NUTSReference) else m
        _hook(zm)
        check_compatible(zm, ds)
        observes[label] = f"p({zm.spec.observes} | ...)"
    if len(set(observes.values())) > 1:
        raise ValueError(
            f"the models observe different things ({observes}); their elpds are not comparable"
        )
    expected: dict[bool, str] = {}
    for label, m in labelled.items():
        zm = m.zm if isinstance(m, NUTSReference) else m
        # the fingerprint zoo.fit took: the targets count wherever the data's task has them
        supervised = zm.info.task != "unsupervised"
        if supervised not in expected:  # hash the training split once per kind, not per model
            expected[supervised] = fingerprint(ds.x_train, ds.y_train if supervised else None)
        if isinstance(m, NUTSReference):
            seen, size = m.fingerprint, "its NUTS run"
        elif m.fitted_on is None:
            raise ValueError(f"{label!r} has not been fitted: call zoo.fit on it first")
        else:
            seen, size = m.fitted_on["fingerprint"], f"{m.fitted_on['num_train']} examples"
        if seen != expected[supervised]:
            raise ValueError(
                f"{label!r} was fitted on different data ({size}) than the training split "
                f"given to compare ({ds.num_train} examples); compare models on the data they "
                "were fitted on"
            )


def _sparsity(zm: ZooModel) -> float:
    if zm.spec.hooks.report is None:
        return math.nan
    report = zm.spec.hooks.report(zm)
    if "sparsity_%" not in report:
        return math.nan
    return float(report["sparsity_%"].iloc[-1]) / 100


def _warnings(result: ElpdResult, vi_khat: float, nuts: NUTSReference | None = None) -> str:
    """The table's warnings cell: PSIS-LOO's Pareto k counts; the VI diagnostic's verdict when
    it says the guide is far from the posterior; a NUTS reference's failed convergence checks.

    LOO is computed for q, not for the posterior, so a guide much narrower than its posterior
    can score a near point estimate on its own training data with every Pareto k small; only
    ``vi_khat`` then shows it.  Likewise chains that never mixed (a BNN's modes) make a "reference"
    that is none; R-hat above 1.01 (Vehtari et al. 2021) and divergences say so in the row.
    """
    summary = result.summary()
    parts = [summary] if summary else []
    if math.isfinite(vi_khat) and vi_khat > KHAT_OK:
        parts.append(f"q far from posterior (vi k={vi_khat:.2g})")
    if nuts is not None:
        if math.isnan(nuts.r_hat_max):
            parts.append("NUTS R-hat undefined (one chain)")
        elif nuts.r_hat_max > RHAT_OK:
            parts.append(f"NUTS R-hat {nuts.r_hat_max:.3g} > {RHAT_OK}")
        if nuts.divergences:
            parts.append(f"{nuts.divergences} divergences")
    return "; ".join(parts)


def compare_models(
    models: Mapping[str, Any] | Sequence[Any],
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    num_samples: int = 200,
    batch_size: int | None = None,
    method: str = "stacking",
    vi: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> ComparisonResult:
    """Rank fitted models by PSIS-LOO on the training split and score them on the test split.

    For each model, ``num_samples`` draws of its guide (a NUTS reference brings its own) are
    scored on every training and test example (:func:`pointwise_log_likelihood`).  The training
    scores go to ArviZ: PSIS-LOO (Vehtari, Gelman & Gabry 2017), WAIC (Watanabe 2010, ArviZ
    0.x) and stacking weights (Yao et al. 2018).  The test scores give the held-out elpd
    (:func:`held_out_elpd`); the draws' mean class probabilities the accuracy and the expected
    calibration error (:func:`zoo.evaluate.expected_calibration_error`).  Where defined, the VI
    diagnostic of Yao, Vehtari, Simpson & Gelman (2018) says how far to trust each guide.

    :param models: fitted :class:`~zoo.registry.ZooModel` s (and :class:`NUTSReference` s), as a
        dict label -> model or a list (labelled ``name:guide``).
    :param data: the :class:`~zoo.data.Dataset` the models were fitted on, or its training
        inputs as a tensor with targets ``y`` (then there is no test split).
    :param num_samples: posterior draws per guide, ``S``.
    :param method: ArviZ's weighting: ``stacking``, ``BB-pseudo-BMA`` or ``pseudo-BMA``.
    :param vi: compute the VI diagnostic where it is defined.
    :raises ValueError: before any work, for ``num_samples < 2``, no models, a model that was
        not fitted or was fitted on other data, models observing different things, data of the
        wrong shape or targets of the wrong length, or an entry without a pointwise
        log-likelihood.
    """
    import pyro
    import torch

    from zoo.data import as_dataset
    from zoo.evaluate import expected_calibration_error

    num_samples = _check_num_samples(num_samples)
    if num_samples < 2:
        raise ValueError("PSIS-LOO needs at least 2 posterior draws per model: num_samples >= 2")
    labelled = _labelled(models)
    ds = as_dataset(data, y)
    _check_models(labelled, ds)

    from tqdm.auto import tqdm

    n_train = ds.num_train
    x_all = torch.cat([ds.x_train, ds.x_test])
    first = next(iter(labelled.values()))
    supervised = (first.zm if isinstance(first, NUTSReference) else first).spec.observes == "y"
    y_all = None
    if supervised:
        y_all = torch.cat([ds.y_train, ds.y_test]) if ds.num_test else ds.y_train
    y_test = ds.y_test.cpu().numpy() if supervised and ds.num_test else None

    idatas, loos, waics, vis = {}, {}, {}, {}
    test_ll, predictive, nuts, rows = {}, {}, {}, {}
    bar = tqdm(labelled.items(), desc="compare", disable=not progress, leave=False)
    for label, m in bar:
        bar.set_postfix_str(label)
        zm = m.zm if isinstance(m, NUTSReference) else m
        pyro.set_rng_seed(seed)
        if isinstance(m, NUTSReference):
            nuts[label] = m
            draws = _draws(
                zm, x_all, y_all, len(next(iter(m.samples.values()))), batch_size, samples=m.samples
            )
            chains = m.num_chains
        else:
            draws = _draws(zm, x_all, y_all, num_samples, batch_size)
            chains = 1
        log_lik = draws.log_lik.numpy()
        train_ll = log_lik[:, :n_train]
        if np.all(np.ptp(train_ll, axis=0) == 0):
            raise ValueError(
                f"{label!r}: every posterior draw gives the same likelihood (its parameters are "
                "point estimates), so PSIS-LOO is undefined; compare models with latent "
                "global variables (e.g. bpca rather than ppca)"
            )
        train_draws = type(draws)(
            log_lik=draws.log_lik[:, :n_train], posterior=draws.posterior, dims=draws.dims
        )
        attrs = {"model": zm.name, "guide": m.guide_name, "data": ds.name}
        idatas[label] = _to_idata(zm, train_draws, ds.x_train, ds.y_train, attrs, chains)
        loos[label] = loo(idatas[label])
        if arviz_major() < 1:
            waics[label] = waic(idatas[label])
        row: dict[str, Any] = {"model": zm.name, "guide": m.guide_name}
        row["test_elpd"] = row["test_elpd_se"] = row["accuracy"] = row["ece"] = math.nan
        if ds.num_test:
            test_ll[label] = log_lik[:, n_train:]
            row["test_elpd"], row["test_elpd_se"], _ = held_out_elpd(test_ll[label])
            if draws.predictive_mean is not None:
                predictive[label] = draws.predictive_mean[n_train:].numpy()
                if zm.info.task == "classification":
                    probs = draws.predictive_mean[n_train:]
                    row["accuracy"] = float((probs.argmax(-1) == ds.y_test.cpu()).double().mean())
                    row["ece"] = expected_calibration_error(probs, ds.y_test.cpu())
        row["sparsity"] = math.nan if isinstance(m, NUTSReference) else _sparsity(zm)
        if isinstance(m, NUTSReference):
            row["fit_seconds"] = m.seconds
        else:
            row["fit_seconds"] = m.fitted_on.get("seconds", math.nan)
        row["vi_khat"] = math.nan
        if isinstance(m, NUTSReference):
            vis[label] = "NUTS: no guide to diagnose (see r_hat_max, ess_bulk_min)"
        elif vi:
            try:
                pyro.set_rng_seed(seed)
                vis[label] = vi_diagnostic(zm, ds, num_samples=max(num_samples, 5))
                row["vi_khat"] = vis[label].khat
            except DiagnosticUndefined as exc:
                vis[label] = str(exc)
        rows[label] = row

    comparison = compare_elpd(loos, method=method)
    table = []
    for label in comparison.index:
        row = rows[label]
        table.append(
            {
                **{k: row[k] for k in ("model", "guide")},
                "elpd_loo": loos[label].elpd,
                "se": loos[label].se,
                "p_loo": loos[label].p,
                "weight": float(comparison.loc[label, "weight"]),
                "warnings": _warnings(loos[label], row["vi_khat"], nuts.get(label)),
                **{k: row[k] for k in COLUMNS[7:]},
            }
        )
    frame = pd.DataFrame(table, index=pd.Index(list(comparison.index), name="label"))
    return ComparisonResult(
        table=frame[list(COLUMNS)],
        comparison=comparison,
        idata=idatas,
        loo=loos,
        waic=waics,
        vi=vis,
        test_log_lik=test_ll,
        predictive=predictive,
        y_test=y_test,
        nuts=nuts,
    )
