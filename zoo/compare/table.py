"""Every fitted model in one table: PSIS-LOO, stacking weights, held-out scores, diagnostics.

:func:`compare_models` scores each fitted model (and each
:class:`~zoo.compare.nuts.NUTSReference`) on every training and test example
(:mod:`zoo.compare.pointwise`), ranks them by PSIS-LOO on the training split with ArviZ's
stacking weights (Vehtari, Gelman & Gabry 2017; Yao et al. 2018), scores them on the test split
(held-out elpd, accuracy, expected calibration error) and adds the VI diagnostic of Yao,
Vehtari, Simpson & Gelman (2018) where it is defined, and from the same ratios
``p(theta, D) / q(theta)`` the PSIS-LOO of the posterior rather than of q (``elpd_loo_q``,
Magnusson et al. 2019).  The table has the columns :data:`COLUMNS`; its ``trust`` column says,
for each row, whether its ranking can be trusted or why not (q far from the posterior, raw LOO
of q, Pareto k > 0.7, a NUTS reference's R-hat), and the rows are ordered so that the first row
is never an untrusted one ahead of a trusted one: trusted rows first, then the others, each
group best first by the guide-corrected LOO where PSIS can smooth it, else ``elpd_loo`` (the rule:
:mod:`zoo.compare.trust`).  :class:`ComparisonResult` keeps what it was computed from.

Usage::

    from zoo import compare_models
    result = compare_models({"meanfield": zm, "nuts": ref}, data, num_samples=200)
    print(result.table)              # elpd_loo, se, p_loo, weight, trust, warnings, ...
    result.idata["meanfield"]        # the InferenceData behind its row
    result.messages                  # every warning ArviZ raised, per model
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zoo.compare.arviz_adapter import (
    KHAT_OK,
    RHAT_OK,
    ElpdResult,
    compare_elpd,
    held_out_summary,
    khat_verdict,
    loo,
    waic,
)
from zoo.compare.checks import check_comparable, check_memory, chunk_draws
from zoo.compare.nuts import NUTSReference
from zoo.compare.pointwise import check_num_samples, draws_inference_data, pointwise_draws
from zoo.compare.trust import CORRECTED_ELPD, rank_rows, trust_cell
from zoo.compare.vi import DiagnosticUndefined, GuideLoo, VIDiagnostic, guide_loo
from zoo.util import local_params

if TYPE_CHECKING:
    import torch

    from zoo.data import Dataset
    from zoo.spec import PointwiseDraws, ZooModel

__all__ = ["COLUMNS", "ComparisonResult", "MessagesByModel", "compare_models", "warnings_cell"]


#: The table's columns, in order.
COLUMNS = (
    "model",
    "guide",
    "elpd_loo",
    "se",
    "p_loo",
    "weight",
    "trust",
    "warnings",
    "test_elpd",
    "test_elpd_se",
    "accuracy",
    "ece",
    "sparsity",
    "fit_seconds",
    "vi_khat",
    "elpd_loo_q",
    "elpd_loo_q_se",
    "khat_q",
)


@dataclass
class ComparisonResult:
    """What :func:`compare_models` returns.

    :ivar table: one row per model, columns :data:`COLUMNS`, index the models' labels; trusted
        rows first, then the others, each group best first
        (:func:`~zoo.compare.trust.rank_rows`).
    :ivar comparison: :func:`~zoo.compare.arviz_adapter.compare_elpd`'s frame (ArviZ's ranks,
        ``elpd_diff``, ``dse``, stacking weights).
    :ivar idata: the ArviZ container (training split) of each model.
    :ivar loo: PSIS-LOO of each model, with ArviZ's Pareto k per observation and warnings.
    :ivar waic: WAIC of each model (ArviZ's on 0.x; on 1.x, which has none,
        :func:`~zoo.compare.arviz_adapter.waic_from_log_lik`).
    :ivar vi: the VI diagnostic of each model, or why it does not apply.
    :ivar test_elpd_i: the held-out elpd of each test example per model,
        ``log (1/S) sum_s p(y_i | theta_s)``, ``(N_test,)`` (accumulated over chunks of draws:
        the ``(S, N_test)`` matrix is never held).
    :ivar predictive: the test split's posterior predictive mean per model (class
        probabilities for classifiers).
    :ivar y_test: the test targets.
    :ivar nuts: the NUTS references among the models.
    :ivar loo_q: each model's PSIS-LOO corrected for its guide (:func:`~zoo.compare.vi.guide_loo`,
        the columns ``elpd_loo_q``, ``elpd_loo_q_se``, ``khat_q``), or why it is ``nan``.
    """

    table: pd.DataFrame
    comparison: pd.DataFrame
    idata: dict[str, Any]
    loo: dict[str, ElpdResult]
    waic: dict[str, ElpdResult]
    vi: dict[str, VIDiagnostic | str]
    test_elpd_i: dict[str, np.ndarray]
    predictive: dict[str, np.ndarray]
    y_test: np.ndarray | None
    nuts: dict[str, NUTSReference]
    loo_q: dict[str, GuideLoo | str] = field(default_factory=dict)

    @property
    def messages(self) -> MessagesByModel:
        """Every warning ArviZ raised, per model, in the table's order (a dict; calling it, as
        before this release, still works but warns)."""
        out = MessagesByModel()
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


class MessagesByModel(dict):
    """:attr:`ComparisonResult.messages`: label -> the warnings of that model.

    Calling it (``result.messages()``, a method until this release) returns itself with a
    ``FutureWarning``.
    """

    def __call__(self) -> MessagesByModel:
        warnings.warn(
            "ComparisonResult.messages is an attribute now: write result.messages, not "
            "result.messages()",
            FutureWarning,
            stacklevel=2,
        )
        return self


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


def _sparsity(zm: ZooModel) -> float:
    if zm.spec.hooks.report is None:
        return math.nan
    report = zm.spec.hooks.report(zm)
    if "sparsity_%" not in report:
        return math.nan
    return float(report["sparsity_%"].iloc[-1]) / 100


def warnings_cell(result: ElpdResult, vi_khat: float, nuts: NUTSReference | None = None) -> str:
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


@local_params()
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
    scored on every training and test example
    (:func:`~zoo.compare.pointwise.pointwise_log_likelihood`).  The training scores go to
    ArviZ: PSIS-LOO (Vehtari, Gelman & Gabry 2017), WAIC (Watanabe 2010) and stacking weights
    (Yao et al. 2018).  The test scores give the held-out elpd
    (:func:`~zoo.compare.arviz_adapter.held_out_elpd`); the draws' mean class probabilities the
    accuracy and the expected calibration error (:func:`zoo.evaluate.expected_calibration_error`).
    Where defined, the VI diagnostic of Yao, Vehtari, Simpson & Gelman (2018) says how far to
    trust each guide.

    :param models: fitted :class:`~zoo.registry.ZooModel` s (and
        :class:`~zoo.compare.nuts.NUTSReference` s), as a dict label -> model or a list
        (labelled ``name:guide``).
    :param data: the :class:`~zoo.data.Dataset` the models were fitted on, or its training
        inputs as a tensor with targets ``y`` (then there is no test split).
    :param num_samples: posterior draws per guide, ``S``.
    :param method: ArviZ's weighting: ``stacking``, ``BB-pseudo-BMA`` or ``pseudo-BMA``.
    :param vi: compute the VI diagnostic where it is defined, and from the same draws the
        PSIS-LOO corrected for the guide (``elpd_loo_q``: q's draws weighted by ``p(theta, D) /
        q(theta)``, :func:`~zoo.compare.vi.guide_loo`); ``nan`` with the reason in
        :attr:`ComparisonResult.loo_q` where it is undefined (MC dropout, a log-uniform prior,
        NUTS, whose draws need no correction).

    The test split is scored in chunks of draws (a running log-sum-exp), so only the training
    split's ``(S, N_train)`` matrix, which PSIS-LOO needs whole, is held per model.

    :raises ValueError: before any work, for ``num_samples < 2``, no models, a model that was
        not fitted or was fitted on other data, models observing different things, data of the
        wrong shape or targets of the wrong length, an entry without a pointwise
        log-likelihood, a guide without global posterior draws (PPCA's point estimates), or
        pointwise log-likelihoods too large for the available memory (the message gives the
        estimate: lower ``num_samples``); see :mod:`zoo.compare.checks`.
    """
    from zoo.data import as_dataset

    num_samples = check_num_samples(num_samples)
    if num_samples < 2:
        raise ValueError("PSIS-LOO needs at least 2 posterior draws per model: num_samples >= 2")
    labelled = _labelled(models)
    ds = as_dataset(data, y)
    check_comparable(labelled, ds)
    num_draws = {label: _num_draws(m, num_samples) for label, m in labelled.items()}
    check_memory(num_draws, ds.num_train, ds.num_test)

    from tqdm.auto import tqdm

    x_all, y_all, y_test = _pooled(labelled, ds)
    scored: dict[str, _Scored] = {}
    bar = tqdm(labelled.items(), desc="compare", disable=not progress, leave=False)
    for label, m in bar:
        bar.set_postfix_str(label)
        scored[label] = _score(
            label, m, ds, x_all, y_all, num_samples=num_samples, batch_size=batch_size, seed=seed
        )
        _diagnose(scored[label], m, ds, num_samples=num_samples, vi=vi, seed=seed, batch=batch_size)

    loos = {label: s.loo for label, s in scored.items()}
    comparison = compare_elpd(loos, method=method)
    return ComparisonResult(
        table=_ranked_table(scored, comparison),
        comparison=comparison,
        idata={label: s.idata for label, s in scored.items()},
        loo=loos,
        waic={label: s.waic for label, s in scored.items() if s.waic is not None},
        vi={label: s.vi for label, s in scored.items() if s.vi is not None},
        test_elpd_i={label: s.test_i for label, s in scored.items() if s.test_i is not None},
        predictive={label: s.predictive for label, s in scored.items() if s.predictive is not None},
        y_test=y_test,
        nuts={label: s.nuts for label, s in scored.items() if s.nuts is not None},
        loo_q={label: s.loo_q for label, s in scored.items() if s.loo_q is not None},
    )


@dataclass
class _Scored:
    """One model's share of the comparison: its row of the table and what the row comes from."""

    row: dict[str, Any]
    idata: Any
    loo: ElpdResult
    waic: ElpdResult | None = None
    vi: VIDiagnostic | str | None = None
    test_i: np.ndarray | None = None
    predictive: np.ndarray | None = None
    nuts: NUTSReference | None = None
    loo_q: GuideLoo | str | None = None


def _pooled(
    labelled: Mapping[str, Any], ds: Dataset
) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray | None]:
    """The training and test inputs in one tensor (training first), their targets alike when
    the models observe ``y`` (``None`` otherwise), and the test targets as NumPy."""
    import torch

    x_all = torch.cat([ds.x_train, ds.x_test])
    first = next(iter(labelled.values()))
    supervised = (first.zm if isinstance(first, NUTSReference) else first).spec.observes == "y"
    y_all = None
    if supervised:
        y_all = torch.cat([ds.y_train, ds.y_test]) if ds.num_test else ds.y_train
    y_test = ds.y_test.cpu().numpy() if supervised and ds.num_test else None
    return x_all, y_all, y_test


def _num_draws(m: Any, num_samples: int) -> int:
    """The draws scored for ``m``: a NUTS reference's own, else ``num_samples`` of the guide."""
    if isinstance(m, NUTSReference):
        return len(next(iter(m.samples.values())))
    return num_samples


def _log_sum_exp(a: np.ndarray) -> np.ndarray:
    """``log sum_s exp(a[s])`` over the first axis, stably."""
    top = a.max(axis=0)
    return top + np.log(np.exp(a - top).sum(axis=0))


def _draw_in_chunks(
    m: Any,
    x_all: torch.Tensor,
    y_all: torch.Tensor | None,
    n_train: int,
    num: int,
    batch_size: int | None,
) -> tuple[PointwiseDraws, np.ndarray | None]:
    """``num`` draws of ``m`` scored on every example, in chunks of
    :func:`~zoo.compare.checks.chunk_draws`: the training columns written into one ``(S,
    N_train)`` array (PSIS-LOO needs it whole), the test columns summed into a running
    log-sum-exp and the predictive mean into a running sum, so no ``(S, N)`` matrix is held.

    :returns: the training split's draws (with the predictive mean of every example) and the
        held-out elpd of each test example (``None`` without a test split).
    """
    import torch

    from zoo.spec import PointwiseDraws

    zm = m.zm if isinstance(m, NUTSReference) else m
    train = np.empty((num, n_train))
    test_lse, pred_sum, posteriors, dims = None, None, [], {}
    step = chunk_draws(len(x_all))
    for start in range(0, num, step):
        k = min(step, num - start)
        samples = None
        if isinstance(m, NUTSReference):
            samples = {name: v[start : start + k] for name, v in m.samples.items()}
        draws = pointwise_draws(zm, x_all, y_all, k, batch_size, samples=samples)
        log_lik = draws.log_lik.numpy()
        train[start : start + k] = log_lik[:, :n_train]
        if len(x_all) > n_train:
            part = _log_sum_exp(log_lik[:, n_train:])
            test_lse = part if test_lse is None else np.logaddexp(test_lse, part)
        if draws.predictive_mean is not None:
            part = draws.predictive_mean.double() * k
            pred_sum = part if pred_sum is None else pred_sum + part
        posteriors.append(draws.posterior)
        dims = draws.dims
        del draws, log_lik  # the chunk goes before the next is drawn
    out = PointwiseDraws(
        log_lik=torch.from_numpy(train),
        posterior={k: torch.cat([p[k] for p in posteriors]) for k in posteriors[0]},
        dims=dims,
        predictive_mean=None if pred_sum is None else pred_sum / num,
    )
    return out, None if test_lse is None else test_lse - math.log(num)


def _score(
    label: str,
    m: Any,
    ds: Dataset,
    x_all: torch.Tensor,
    y_all: torch.Tensor | None,
    *,
    num_samples: int,
    batch_size: int | None,
    seed: int,
) -> _Scored:
    """Score ``m`` (a fitted model or a NUTS reference) on every example: PSIS-LOO and WAIC on
    the training split, the test columns on the test split, its fit's sparsity
    and time.  The draws are taken right after seeding Pyro with ``seed``."""
    import pyro

    zm = m.zm if isinstance(m, NUTSReference) else m
    pyro.set_rng_seed(seed)
    num = _num_draws(m, num_samples)
    chains = m.num_chains if isinstance(m, NUTSReference) else 1
    draws, test_i = _draw_in_chunks(m, x_all, y_all, ds.num_train, num, batch_size)
    if np.all(np.ptp(draws.log_lik.numpy(), axis=0) == 0):
        raise ValueError(
            f"{label!r}: every posterior draw gives the same likelihood (its parameters are "
            "point estimates), so PSIS-LOO is undefined; compare models with latent "
            "global variables (e.g. bpca rather than ppca)"
        )
    attrs = {"model": zm.name, "guide": m.guide_name, "data": ds.name}
    idata = draws_inference_data(zm, draws, ds.x_train, ds.y_train, attrs, chains)
    scored = _Scored(row={"model": zm.name, "guide": m.guide_name}, idata=idata, loo=loo(idata))
    scored.waic = waic(idata)
    _test_columns(scored, zm, draws, test_i, ds)
    if isinstance(m, NUTSReference):
        scored.nuts = m
        scored.row["sparsity"] = math.nan
        scored.row["fit_seconds"] = m.seconds
    else:
        scored.row["sparsity"] = _sparsity(zm)
        scored.row["fit_seconds"] = m.fitted_on.get("seconds", math.nan)
    return scored


def _test_columns(
    scored: _Scored,
    zm: ZooModel,
    draws: PointwiseDraws,
    test_i: np.ndarray | None,
    ds: Dataset,
) -> None:
    """The held-out elpd and its s.e. and, for a classifier, the accuracy and the expected
    calibration error of the draws' mean class probabilities; ``nan`` without a test split."""
    from zoo.evaluate import expected_calibration_error

    row = scored.row
    row["test_elpd"] = row["test_elpd_se"] = row["accuracy"] = row["ece"] = math.nan
    if not ds.num_test or test_i is None:
        return
    n_train = ds.num_train
    scored.test_i = test_i
    row["test_elpd"], row["test_elpd_se"] = held_out_summary(test_i)
    if draws.predictive_mean is not None:
        scored.predictive = draws.predictive_mean[n_train:].numpy()
        if zm.info.task == "classification":
            probs = draws.predictive_mean[n_train:]
            row["accuracy"] = float((probs.argmax(-1) == ds.y_test.cpu()).double().mean())
            row["ece"] = expected_calibration_error(probs, ds.y_test.cpu())


def _diagnose(
    scored: _Scored,
    m: Any,
    ds: Dataset,
    *,
    num_samples: int,
    vi: bool,
    seed: int,
    batch: int | None = None,
) -> None:
    """The VI diagnostic of a guide and its corrected PSIS-LOO, from the same draws
    (:func:`~zoo.compare.vi.guide_loo`, Pyro seeded with ``seed`` first), or why there is none."""
    import pyro

    row = scored.row
    row["vi_khat"] = row["elpd_loo_q"] = row["elpd_loo_q_se"] = row["khat_q"] = math.nan
    if isinstance(m, NUTSReference):
        scored.vi = "NUTS: no guide to diagnose (see r_hat_max, ess_bulk_min)"
        scored.loo_q = "NUTS: its draws are the posterior's, so elpd_loo needs no correction"
    elif not vi:
        scored.loo_q = "not computed (vi=False)"
    else:
        try:
            pyro.set_rng_seed(seed)
            q = guide_loo(m, ds, num_samples=max(num_samples, 5), batch_size=batch)
        except DiagnosticUndefined as exc:
            scored.vi = scored.loo_q = str(exc)
            return
        scored.loo_q = q
        scored.vi = VIDiagnostic(q.vi_khat, khat_verdict(q.vi_khat), q.log_ratios, q.messages)
        row.update(vi_khat=q.vi_khat, elpd_loo_q=q.elpd, elpd_loo_q_se=q.se, khat_q=q.khat)


def _ranked_table(scored: Mapping[str, _Scored], comparison: pd.DataFrame) -> pd.DataFrame:
    """The table: one row per model, :data:`COLUMNS`, ordered by
    :func:`~zoo.compare.trust.rank_rows` (trusted rows first, each group best first)."""
    table = []
    for label in comparison.index:
        s = scored[label]
        row = s.row
        table.append(
            {
                **row,
                "elpd_loo": s.loo.elpd,
                "se": s.loo.se,
                "p_loo": s.loo.p,
                "weight": float(comparison.loc[label, "weight"]),
                "warnings": warnings_cell(s.loo, row["vi_khat"], s.nuts),
            }
        )
    frame = pd.DataFrame(table, index=pd.Index(list(comparison.index), name="label"))
    frame["trust"] = [_trust(scored[label], frame.loc[label]) for label in frame.index]
    return rank_rows(frame[[c for c in COLUMNS if c in frame.columns]])


def _trust(s: _Scored, row: pd.Series) -> str:
    """The ``trust`` cell of one row (:func:`~zoo.compare.trust.trust_cell`)."""
    corrected = CORRECTED_ELPD in row.index and math.isfinite(float(row[CORRECTED_ELPD]))
    return trust_cell(
        n_high_k=s.loo.n_high_k,
        n_points=s.loo.n_data_points,
        vi_khat=float(row["vi_khat"]),
        corrected=corrected,
        nuts=s.nuts is not None,
        r_hat=math.nan if s.nuts is None else s.nuts.r_hat_max,
        divergences=0 if s.nuts is None else s.nuts.divergences,
    )
