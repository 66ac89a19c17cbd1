"""Shared fixtures: every test starts from a clean Pyro state and a fixed seed."""

import pyro
import pytest
import torch

import zoo


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def one_thread():
    """One intra-op thread: small tensors gain nothing from more, and on a loaded 2-core machine
    a second thread stalls at every op (10 ms per conv seen)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ppca_data():
    """Synthetic PPCA data with a known ground truth (d=10, 3 true dimensions)."""
    return zoo.load("ppca-synthetic")
