"""Shared fixtures: every test starts from a clean Pyro state and a fixed seed."""

import pyro
import pytest

import zoo


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def ppca_data():
    """Synthetic PPCA data with a known ground truth (d=10, 3 true dimensions)."""
    return zoo.load("ppca-synthetic")
