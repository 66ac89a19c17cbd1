"""A model zoo for Bayesian deep learning on Pyro.

Usage::

    from zoo import compare, create_model, fit, load
    data = load("digits")                        # built in, no download
    zm = create_model("ppca", data=data, latent_dim=2)
    result = fit(zm, data, num_epochs=100)
    print(result.history.tail(), zm.evaluate(data, "test"))
    print(compare([fitted_a, fitted_b], data).table)   # PSIS-LOO, stacking weights, test elpd

Importing :mod:`zoo` turns on Pyro's ``module_local_params`` setting: each ``PyroModule`` then
keeps its parameters to itself instead of in Pyro's global parameter store, so several models
with the same site names can live (and be compared) in one process.
"""

import pyro

pyro.settings.set(module_local_params=True)

import zoo.models  # noqa: E402, F401  (registers the model families)

# Binds the name `compare` to the function, as the README's `from zoo import compare` promises;
# the module's other names are imported from it: `from zoo.compare import loo`.
from zoo.compare import compare  # noqa: E402
from zoo.data import DataInfo, Dataset, from_tensors, list_datasets, load  # noqa: E402
from zoo.registry import (  # noqa: E402
    ModelSpec,
    ZooModel,
    create_model,
    get_spec,
    list_models,
    register_model,
)
from zoo.train import DivergenceError, FitResult, TrainConfig, fit  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DataInfo",
    "Dataset",
    "DivergenceError",
    "FitResult",
    "ModelSpec",
    "TrainConfig",
    "ZooModel",
    "compare",
    "create_model",
    "fit",
    "from_tensors",
    "get_spec",
    "list_datasets",
    "list_models",
    "load",
    "register_model",
]
