"""compare_models refuses, before drawing anything, what it cannot compare or hold in memory;
it scores the test split in chunks of draws; its memory estimate matches what it allocates."""

import tracemalloc

import numpy as np
import pytest
import torch

import zoo
import zoo.compare.checks as checks
import zoo.compare.table as table_module
from zoo import create_model, fit, from_tensors
from zoo.compare import compare_models

pytestmark = pytest.mark.usefixtures("one_thread")


def _regression(n=120, n_test=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, 3, generator=gen)
    y = x @ torch.tensor([1.0, -0.5, 0.25]) + 0.5 * torch.randn(n + n_test, generator=gen)
    return from_tensors(x[:n], y[:n], x_test=x[n:], y_test=y[n:])


def _fitted(name="mlp-regressor-normal", data=None, **kwargs):
    data = _regression() if data is None else data
    zm = create_model(name, data=data, seed=0, **kwargs)
    fit(zm, data, num_epochs=1, batch_size=60, progress=False, eval_every=0)
    return zm, data


@pytest.fixture
def no_drawing(monkeypatch):
    """Any posterior draw fails the test: the refusals must come before the first one."""

    def draw(*args, **kwargs):
        raise AssertionError("a posterior draw was taken before the refusal")

    monkeypatch.setattr(table_module, "pointwise_draws", draw)


def test_a_model_without_global_draws_is_refused_before_any_draw(no_drawing):
    ppca = zoo.load("ppca-synthetic")
    p = create_model("ppca", data=ppca, latent_dim=3, seed=0)
    fit(p, ppca, num_epochs=1, progress=False, eval_every=0)
    with pytest.raises(ValueError, match=r"ppca \(analytic\).*no global latent.*bpca"):
        compare_models({"ppca": p}, ppca, num_samples=5, vi=False)


def test_too_many_draws_for_the_memory_are_refused_before_any_draw(monkeypatch, no_drawing):
    zm, data = _fitted()
    monkeypatch.setattr(checks, "available_memory", lambda: 10 * 2**20)  # 10 MiB
    with pytest.raises(ValueError, match=r"needs about .* MB .* 10 MB available.*num_samples"):
        compare_models([zm], data, num_samples=100_000, vi=False)


def test_memory_unknown_warns_above_the_fixed_size(monkeypatch):
    zm, data = _fitted()
    monkeypatch.setattr(checks, "available_memory", lambda: None)
    monkeypatch.setattr(checks, "WARN_BYTES", 1000)
    with pytest.warns(checks.CompareMemoryWarning, match="available memory is unknown"):
        compare_models([zm], data, num_samples=10, vi=False)


def test_available_memory_reads_meminfo_and_falls_back(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       8000000 kB\nMemAvailable:    1024 kB\n")
    assert checks.available_memory(meminfo) == 1024 * 1024
    # no MemAvailable line (old kernels) and no file: the free pages, or None when unknown
    meminfo.write_text("MemTotal:       8000000 kB\n")
    fallback = checks.available_memory(tmp_path / "missing")
    assert checks.available_memory(meminfo) == fallback
    assert fallback is None or fallback > 0
    monkeypatch.setattr(checks.os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError))
    assert checks.available_memory(tmp_path / "missing") is None


def test_chunked_test_scores_equal_the_whole_matrix(monkeypatch):
    """The test split is scored in chunks of draws (running log-sum-exp and mean): the table
    equals the one computed in a single chunk to 1e-9 (the same draws, in the same order)."""
    zm, data = _fitted()
    whole = compare_models([zm], data, num_samples=40, vi=False).table
    monkeypatch.setattr(checks, "CHUNK_BYTES", 1)  # one draw per chunk
    chunked = compare_models([zm], data, num_samples=40, vi=False).table
    for col in ("elpd_loo", "p_loo", "test_elpd", "test_elpd_se"):
        assert chunked[col].iloc[0] == pytest.approx(whole[col].iloc[0], abs=1e-9), col


def test_the_estimate_matches_what_compare_allocates():
    """The kept log-likelihood arrays are exactly S x N_train float64 per model (tolerance 0);
    the estimate of the NumPy arrays (kept, and ArviZ's copies) bounds their traced peak
    (tracemalloc) from above and is at most 1.5 times it.  The chunk's torch tensors are not
    traced by tracemalloc; they are bounded by CHUNK_BYTES."""
    zm, data = _fitted(data=_regression(n=1000, n_test=40))
    other, _ = _fitted(data=data, guide="mc-dropout")
    draws = {"a": 300, "b": 300}
    estimate = checks.estimate_compare_memory(draws, data.num_train, data.num_test)
    compare_models({"a": zm}, data, num_samples=5, vi=False)  # imports ArviZ outside the trace
    tracemalloc.start()
    try:  # the peak of NumPy's allocations (tracemalloc sees them, not torch's)
        result = compare_models({"a": zm, "b": other}, data, num_samples=300, vi=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = sum(result.idata[k].log_likelihood["obs"].values.nbytes for k in draws)
    assert estimate.kept == kept == 2 * 300 * 1000 * 8
    assert peak <= estimate.kept + estimate.arviz <= 1.5 * peak, (peak, estimate)
    assert estimate.peak == estimate.kept + estimate.arviz + estimate.chunk
    assert result.test_elpd_i["a"].shape == (data.num_test,)
    assert np.isfinite(result.test_elpd_i["a"]).all()
