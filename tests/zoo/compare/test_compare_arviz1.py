"""The ArviZ adapter, zoo/compare/arviz_adapter.py, on ArviZ 1.x (arviz_base, arviz_stats and
arviz_plots).

ArviZ 1.x needs Python >= 3.12; pip installs 0.23 on 3.11, where test_compare.py covers the
0.x path.  This file imports neither torch nor the zoo package: it loads
zoo/compare/arviz_adapter.py alone (it needs only NumPy, pandas and xarray), so it runs in an
environment with ArviZ 1.x and no torch:

    python3.12 -m venv /tmp/az1 && /tmp/az1/bin/pip install "arviz>=1" pytest matplotlib
    /tmp/az1/bin/python -m pytest --noconftest tests/zoo/compare/test_compare_arviz1.py
"""

import importlib.metadata
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ARVIZ = importlib.metadata.version("arviz")
pytestmark = pytest.mark.skipif(
    int(ARVIZ.split(".")[0]) < 1,
    reason=f"ArviZ 1.x path: this environment has arviz {ARVIZ} (1.x needs Python >= 3.12); "
    "the 0.x path is tested in test_compare.py",
)


@pytest.fixture(scope="module")
def C():
    path = Path(__file__).resolve().parents[3] / "zoo" / "compare" / "arviz_adapter.py"
    spec = importlib.util.spec_from_file_location("zoo_compare_alone", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _log_lik(seed, s=400, n=60, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(-1.0 - shift, 0.4, (s, n)) + rng.normal(0, 0.3, (1, n))


def test_inference_data_is_a_datatree_with_the_groups(C):
    import xarray as xr

    data = C.inference_data(
        _log_lik(0), np.zeros(60), {"norm": np.ones((400, 2))}, {"norm": ("layer", ["a", "b"])}
    )
    assert C.arviz_major() >= 1 and isinstance(data, xr.DataTree)
    assert {"posterior", "log_likelihood", "observed_data"} <= set(data.children)
    assert data["log_likelihood"]["obs"].shape == (1, 400, 60)
    assert list(data["posterior"]["layer"].values) == ["a", "b"]


def test_loo_equals_arviz_stats_and_its_identities(C):
    import arviz_stats

    log_lik = _log_lik(1)
    data = C.inference_data(log_lik, np.zeros(60))
    ours = C.loo(data)
    reference = arviz_stats.loo(data, pointwise=True, var_name="obs")
    assert ours.elpd == reference.elpd and ours.se == reference.se and ours.p == reference.p
    np.testing.assert_array_equal(ours.pareto_k, np.asarray(reference.pareto_k).ravel())
    lppd_i = np.log(np.mean(np.exp(log_lik), axis=0))
    assert ours.p == pytest.approx(lppd_i.sum() - ours.elpd, abs=1e-9)
    assert ours.pointwise.sum() == pytest.approx(ours.elpd, abs=1e-9)
    assert not ours.warning and ours.messages == []


def test_high_pareto_k_is_surfaced(C):
    rng = np.random.default_rng(2)
    log_lik = rng.normal(-1.0, 0.1, (200, 30))
    log_lik[:, 0] = -1.5 * rng.exponential(1.0, 200)  # Pareto weights, shape 1.5
    result = C.loo(C.inference_data(log_lik, np.zeros(30)))
    assert result.pareto_k[0] > 0.7 and result.warning
    assert any("Pareto" in m for m in result.messages) and "k>0.7" in result.summary()


def test_compare_elpd_keeps_0x_column_names_and_signs(C):
    a = C.loo(C.inference_data(_log_lik(3), np.zeros(60)))
    b = C.loo(C.inference_data(_log_lik(3, shift=0.2), np.zeros(60)))
    table = C.compare_elpd({"b": b, "a": a})
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == [
        "rank",
        "elpd",
        "p",
        "elpd_diff",
        "dse",
        "weight",
        "se",
        "warning",
    ]
    assert table.loc["b", "elpd_diff"] == pytest.approx(a.elpd - b.elpd, abs=1e-9)
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    c = C.loo(C.inference_data(_log_lik(4, n=61), np.zeros(61)))
    with pytest.raises(ValueError, match="different numbers of observations"):
        C.compare_elpd({"a": a, "c": c})


def test_waic_on_arviz_1_is_computed_from_the_log_likelihood(C):
    """ArviZ 1.x has no WAIC: waic() computes it with waic_from_log_lik (checked against
    ArviZ 0.23's az.waic in test_compare.py), here against its closed form."""
    log_lik = _log_lik(5)
    result = C.waic(C.inference_data(log_lik, np.zeros(60)))
    lppd_i = np.log(np.mean(np.exp(log_lik), axis=0))
    closed = lppd_i - log_lik.var(axis=0)
    assert result.kind == "waic" and result.pareto_k is None
    assert result.elpd == pytest.approx(closed.sum(), abs=1e-9)
    assert result.se == pytest.approx(math.sqrt(60 * closed.var()), abs=1e-9)
    assert result.p == pytest.approx(log_lik.var(axis=0).sum(), abs=1e-9)
    with pytest.raises(ValueError, match="PSIS-LOO results only"):
        C.compare_elpd({"a": result, "b": result})


def test_psis_khat_and_mcmc_diagnostics(C):
    rng = np.random.default_rng(5)
    assert C.psis_khat(rng.normal(0, 0.1, 4000))[0] < 0.5
    assert C.psis_khat(rng.exponential(1.0, 4000))[0] == pytest.approx(1.0, abs=0.3)
    r_hat, ess = C.mcmc_diagnostics({"w": rng.normal(size=(2, 500, 3))})
    assert r_hat < 1.02 and ess > 500  # independent draws: ESS near 1000


def test_held_out_elpd(C):
    log_lik = _log_lik(6, s=50, n=7)
    elpd, se, _ = C.held_out_elpd(log_lik)
    by_hand = np.log(np.exp(log_lik).mean(0))
    assert elpd == pytest.approx(by_hand.sum(), rel=1e-12)
    assert se == pytest.approx(math.sqrt(7 * by_hand.var()), rel=1e-12)


def test_plot_compare(C, tmp_path):
    pytest.importorskip("matplotlib")
    a = C.loo(C.inference_data(_log_lik(7), np.zeros(60)))
    b = C.loo(C.inference_data(_log_lik(7, shift=0.2), np.zeros(60)))
    path = C.plot_compare(C.compare_elpd({"a": a, "b": b}), tmp_path / "cmp.png")
    assert path.stat().st_size > 2000


def test_mcmc_inference_data_without_pyro_runs(C):
    """ArviZ 1.x has no Pyro converter: NUTS chains become a DataTree through from_dict."""
    import xarray as xr

    chains = {"w": np.random.default_rng(8).normal(size=(2, 100, 3))}
    data, messages = C.mcmc_inference_data(chains)
    assert isinstance(data, xr.DataTree) and isinstance(messages, list)
    np.testing.assert_array_equal(data["posterior"]["w"].values, chains["w"])


def test_constant_draws_are_explained_not_counted(C):
    """Points whose log-likelihood is the same in every draw (a confident point's 0.0): k is
    undefined, the term is exact (the log-likelihood itself), ArviZ's own result holds it too,
    and no k > 0.7 is counted."""
    log_lik = _log_lik(9)
    log_lik[:, :5] = -1e-20  # constant in every draw
    log_lik[:, 5] = -1e-14 * np.random.default_rng(9).uniform(1, 2, 400)  # within 1e-8 nats
    result = C.loo(C.inference_data(log_lik, np.zeros(60)))
    assert result.constant[:6].all() and result.n_constant == 6 and result.n_high_k == 0
    np.testing.assert_allclose(result.pointwise[:6], log_lik[0, :6], atol=C.CONSTANT_DRAWS)
    assert np.isfinite(result.pointwise).all() and not result.warning
    assert float(result.raw.elpd) == pytest.approx(result.elpd)
    assert any("constant draws, not heavy tails" in m for m in result.messages)
    assert np.isfinite(C.compare_elpd({"a": result, "b": result})["elpd"]).all()


def test_psis_smooth_normalizes_over_the_last_axis(C):
    rng = np.random.default_rng(10)
    smoothed, k, _ = C.psis_smooth(rng.normal(0, 0.3, (4, 500)))
    np.testing.assert_allclose(np.exp(smoothed).sum(-1), 1.0, rtol=1e-12)
    assert k.shape == (4,) and (k < 0.5).all()
