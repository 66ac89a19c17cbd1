"""Model comparison with ArviZ: pointwise log-likelihoods, PSIS-LOO, WAIC, stacking, NUTS.

This package turns fitted guides into ArviZ objects and ranks models by their expected log
pointwise predictive density (elpd).  Its modules, bottom to top:

* :mod:`zoo.compare.arviz_adapter` -- the only module of the zoo that imports ArviZ, NumPy
  arrays in, plain results out, on ArviZ 0.x and 1.x alike; no torch, no zoo:
  :func:`inference_data` (``InferenceData`` on 0.x, ``DataTree`` on 1.x), :func:`loo`,
  :func:`waic`, :func:`compare_elpd` -- PSIS-LOO (Vehtari, Gelman & Gabry 2017), WAIC
  (Watanabe 2010) and stacking weights (Yao et al. 2018, "Using stacking to average Bayesian
  predictive distributions"), every Pareto-k warning kept -- :func:`held_out_elpd`,
  :func:`psis_khat`, :func:`mcmc_diagnostics`, :func:`plot_compare`.
* :mod:`zoo.compare.pointwise` -- :func:`pointwise_log_likelihood`, ``log p(y_i | x_i,
  theta_s)`` for ``S`` draws ``theta_s`` of the guide, each draw shared by every example, shape
  ``(S, N)``; :func:`to_inference_data`, the same as ArviZ's container with named
  low-dimensional quantities of each draw (weight norms, never the weights themselves).
* :mod:`zoo.compare.vi` -- :func:`vi_diagnostic`, the Pareto k of the importance ratios
  ``p(theta, D) / q(theta)`` (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it work?"):
  how far to trust a guide; :func:`guide_loo`, PSIS-LOO of the posterior from the guide's
  draws weighted by those ratios (Magnusson et al. 2019), beside the raw LOO of q.
* :mod:`zoo.compare.nuts` -- :func:`nuts_reference`, NUTS (Hoffman & Gelman 2014) through
  Pyro's MCMC on the same model, the exact posterior a guide can be ranked against.
* :mod:`zoo.compare.checks` -- what a comparison checks before any work:
  :func:`check_comparable` (models that can share a table: a pointwise log-likelihood, global
  posterior draws, the same observed variable, fitted on the data) and :func:`check_memory`
  (the estimate of the pointwise log-likelihood arrays against the available memory).
* :mod:`zoo.compare.trust` -- :func:`trust_cell` (whether a row's ranking can be trusted, or
  why not) and :func:`rank_rows` (trusted rows first, each group best first).
* :mod:`zoo.compare.table` -- :func:`compare_models`, all of it for a set of fitted models, as
  one table with the columns :data:`COLUMNS`.

Usage::

    from zoo import compare_models, create_model, fit, load
    data = load("digits")
    models = {}
    for guide in ("meanfield", "mc-dropout"):
        zm = create_model("logreg", data=data, guide=guide, seed=0)
        fit(zm, data, num_epochs=50, progress=False)
        models[guide] = zm
    result = compare_models(models, data, num_samples=200)
    print(result.table)              # elpd_loo, se, p_loo, weight, trust, warnings, ...
    result.idata["meanfield"]        # the InferenceData behind its row
"""

from zoo.compare.arviz_adapter import (
    KHAT_GOOD,
    KHAT_OK,
    RHAT_OK,
    ElpdResult,
    arviz_major,
    compare_elpd,
    held_out_elpd,
    held_out_summary,
    inference_data,
    khat_verdict,
    loo,
    mcmc_diagnostics,
    plot_compare,
    psis_khat,
    waic,
)
from zoo.compare.checks import (
    CompareMemoryWarning,
    MemoryEstimate,
    available_memory,
    check_comparable,
    check_memory,
    check_posterior_draws,
    estimate_compare_memory,
)
from zoo.compare.nuts import NUTSReference, check_nuts_model, nuts_reference
from zoo.compare.pointwise import pointwise_log_likelihood, to_inference_data
from zoo.compare.table import COLUMNS, ComparisonResult, compare_models
from zoo.compare.trust import TRUST_OK, rank_rows, trust_cell, untrusted_weight_note
from zoo.compare.vi import (
    DiagnosticUndefined,
    GuideLoo,
    VIDiagnostic,
    guide_loo,
    reweighted_loo,
    vi_diagnostic,
)

__all__ = [
    "COLUMNS",
    "KHAT_GOOD",
    "KHAT_OK",
    "RHAT_OK",
    "TRUST_OK",
    "CompareMemoryWarning",
    "ComparisonResult",
    "DiagnosticUndefined",
    "ElpdResult",
    "GuideLoo",
    "MemoryEstimate",
    "NUTSReference",
    "VIDiagnostic",
    "arviz_major",
    "available_memory",
    "check_comparable",
    "check_memory",
    "check_nuts_model",
    "check_posterior_draws",
    "compare_elpd",
    "compare_models",
    "estimate_compare_memory",
    "guide_loo",
    "held_out_elpd",
    "held_out_summary",
    "inference_data",
    "khat_verdict",
    "loo",
    "mcmc_diagnostics",
    "nuts_reference",
    "plot_compare",
    "pointwise_log_likelihood",
    "psis_khat",
    "rank_rows",
    "reweighted_loo",
    "to_inference_data",
    "trust_cell",
    "untrusted_weight_note",
    "vi_diagnostic",
    "waic",
]
