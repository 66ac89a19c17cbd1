"""A model zoo for Bayesian deep learning on Pyro.

Usage::

    from zoo import compare_models, create_model, fit, load
    data = load("digits")                        # built in, no download
    zm = create_model("ppca", data=data, latent_dim=2)
    result = fit(zm, data, num_epochs=100)
    print(result.history.tail(), zm.evaluate(data, "test"))
    print(compare_models([fitted_a, fitted_b], data).table)   # PSIS-LOO, stacking, test elpd

The names above are loaded on first use (PEP 562), so that ``import zoo.data`` or
``import guides`` does not pull in every model family, the trainer and ArviZ.

Importing :mod:`zoo` changes no global state: :func:`pyro.settings.get` is the same before and
after.  The zoo's own calls (building, training, evaluating, comparing, exporting) turn on
Pyro's ``module_local_params`` for their duration only (:func:`zoo.util.local_params`), so that
each model keeps its parameters to itself and several models with the same site names can live
(and be compared) in one process; a zoo-made model and guide also train in a plain
``pyro.infer.SVI`` loop (see :mod:`zoo.train.trainer`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "DataInfo": "zoo.data",
    "Dataset": "zoo.data",
    "from_tensors": "zoo.data",
    "list_datasets": "zoo.data",
    "load": "zoo.data",
    "Hooks": "zoo.spec",
    "ModelSpec": "zoo.spec",
    "ZooModel": "zoo.spec",
    "create_model": "zoo.registry",
    "from_module": "zoo.registry",
    "get_spec": "zoo.registry",
    "list_models": "zoo.registry",
    "register_model": "zoo.registry",
    "DivergenceError": "zoo.train",
    "FitResult": "zoo.train",
    "TrainConfig": "zoo.train",
    "Trainer": "zoo.train",
    "fit": "zoo.train",
    "compare_models": "zoo.compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    try:  # a submodule, as `import zoo.x` would give: zoo.compare, zoo.data, ...
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
