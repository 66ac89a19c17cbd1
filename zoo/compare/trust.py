"""Which rows of the comparison table can be trusted, and an order that does not mislead.

PSIS-LOO (Vehtari, Gelman & Gabry 2017) estimates a model's expected log predictive density
from its own training data, and it can be wrong in ways its number does not show.  A row's
ranking cannot be trusted, and its ``trust`` cell gives the reasons (``"ok"`` otherwise), when

* **q is far from the posterior** -- ``vi_khat > 0.7``, the Pareto k of ``p(theta, D) /
  q(theta)`` (Yao, Vehtari, Simpson & Gelman 2018): "q far from posterior (vi k=38)".  LOO is
  computed for the guide's q, and a q much narrower than the posterior scores a near point
  estimate on its own training data; a correction for the guide rests on the same importance
  ratios, so it does not help here either;
* **the LOO is the raw LOO of q and nothing checks q** -- a guide without the VI diagnostic (an
  improper prior, a guide without a density, ``vi=False``) and without a LOO corrected for the
  guide (the column :data:`CORRECTED_ELPD`, where the table has it): "raw LOO of q (no
  correction)".  A guide with ``vi_khat <= 0.7`` is close enough to its posterior for its raw
  LOO to stand;
* **some Pareto k > 0.7** -- PSIS-LOO is unreliable at those points (Vehtari et al. 2024):
  "k>0.7 on 6 of 1437 points";
* **a NUTS reference did not converge** -- R-hat above 1.01 or undefined (one chain), or
  divergent transitions (Vehtari et al. 2021): "R-hat 1.03", "2 divergences".

**The order** (:func:`rank_rows`): trusted rows first, then the others; within each group by
the ranking elpd, best first: :data:`CORRECTED_ELPD` (LOO corrected for the guide) where the
table has that column and the row a finite value, ``elpd_loo`` otherwise.  A reader who looks
at the first row only thus sees a trusted model, or, when no row is trusted, a row whose
``trust`` cell says why not.  The stacking weights are ArviZ's, computed from ``elpd_loo``;
:func:`untrusted_weight_note` says when weight goes to untrusted rows.

Usage::

    from zoo.compare.trust import rank_rows, trust_cell
    trust_cell(n_high_k=0, n_points=1437, vi_khat=38.2)      # 'q far from posterior (vi k=38)'
    table["trust"] = [...]                                     # one cell per row
    table = rank_rows(table)                                   # trusted rows first
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from zoo.compare.arviz_adapter import KHAT_OK, RHAT_OK

__all__ = [
    "CORRECTED_ELPD",
    "TRUST_OK",
    "rank_rows",
    "ranking_elpd",
    "trust_cell",
    "trust_reasons",
    "untrusted_weight_note",
]

#: The ``trust`` cell of a row whose ranking holds.
TRUST_OK = "ok"

#: The table's column of PSIS-LOO corrected for the guide (importance weights p(theta, D) /
#: q(theta)), when the table has it; the ranking uses it where it is finite.
CORRECTED_ELPD = "elpd_loo_q"


def trust_reasons(
    *,
    n_high_k: int,
    n_points: int,
    vi_khat: float = math.nan,
    corrected: bool = False,
    nuts: bool = False,
    r_hat: float = math.nan,
    divergences: int = 0,
) -> list[str]:
    """Why a row's ranking cannot be trusted: empty when it can (the rule is the module's).

    :param n_high_k: points whose PSIS-LOO Pareto k exceeds 0.7.
    :param n_points: the points LOO was computed on.
    :param vi_khat: the VI diagnostic's k, ``nan`` where it is undefined.
    :param corrected: the row has a LOO corrected for the guide.
    :param nuts: the row is a NUTS reference (no guide: ``vi_khat`` does not apply), with its
        largest ``r_hat`` (``nan`` for one chain) and its ``divergences``.
    """
    reasons = []
    if not nuts:
        if math.isfinite(vi_khat) and vi_khat > KHAT_OK:
            reasons.append(f"q far from posterior (vi k={vi_khat:.2g})")
        elif math.isnan(vi_khat) and not corrected:
            reasons.append("raw LOO of q (no correction)")
    if n_high_k:
        reasons.append(f"k>0.7 on {n_high_k} of {n_points} points")
    if nuts:
        if math.isnan(r_hat):
            reasons.append("R-hat undefined (one chain)")
        elif r_hat > RHAT_OK:
            reasons.append(f"R-hat {r_hat:.3g}")
        if divergences:
            reasons.append(f"{divergences} divergences")
    return reasons


def trust_cell(**kwargs: Any) -> str:
    """The ``trust`` cell: :data:`TRUST_OK`, or :func:`trust_reasons` (same arguments) joined
    by ``"; "``."""
    return "; ".join(trust_reasons(**kwargs)) or TRUST_OK


def ranking_elpd(table: pd.DataFrame) -> pd.Series:
    """The elpd each row is ranked by: :data:`CORRECTED_ELPD` where the table has that column
    and the row a finite value, ``elpd_loo`` otherwise."""
    elpd = table["elpd_loo"].astype(float)
    if CORRECTED_ELPD in table.columns:
        corrected = table[CORRECTED_ELPD].astype(float)
        elpd = corrected.where(np.isfinite(corrected), elpd)
    return elpd


def rank_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` reordered: rows whose ``trust`` is :data:`TRUST_OK` first, then the others,
    each group by :func:`ranking_elpd`, best first (ties keep their order)."""
    if "trust" not in table.columns:
        raise ValueError("rank_rows needs a 'trust' column (see trust_cell)")
    key = pd.DataFrame(
        {
            "untrusted": (table["trust"] != TRUST_OK).to_numpy(),
            "elpd": -ranking_elpd(table).to_numpy(),
        },
        index=range(len(table)),
    )
    order = key.sort_values(["untrusted", "elpd"], kind="stable").index
    return table.iloc[list(order)]


def untrusted_weight_note(table: pd.DataFrame, labels: pd.Index | None = None) -> str | None:
    """A note saying how much stacking weight ArviZ gave to rows whose ranking cannot be
    trusted, naming them (``labels``, else the table's index); ``None`` when none did."""
    labels = table.index if labels is None else labels
    untrusted = (table["trust"] != TRUST_OK).to_numpy()
    weights = table["weight"].to_numpy(dtype=float)
    total = float(weights[untrusted].sum())
    if total < 0.005:
        return None
    named = [
        f"{label} ({w:.2f})"
        for label, w, bad in zip(labels, weights, untrusted, strict=True)
        if bad and w >= 0.005
    ]
    return (
        f"stacking weight {total:.2f} of 1 goes to rows whose ranking cannot be trusted "
        f"(trust column): {', '.join(named)}; the weights are ArviZ's, from the raw elpd_loo"
    )
