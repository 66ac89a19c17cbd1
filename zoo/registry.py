"""The model registry: the single source of truth for the CLI, the benchmarks and the tests.

The model families (:mod:`zoo.models`) each list their entries (:class:`~zoo.spec.ModelSpec`)
as ``SPECS``; this module, one layer above them, collects them, and takes a user's entries
through :func:`register_model`.  :func:`create_model` turns an entry into a ready
:class:`~zoo.spec.ZooModel` (model + guide) for a given dataset shape.

Usage::

    from zoo import create_model, list_models
    list_models()                               # ['attention-amortized', ..., 'vae-fashion']
    zm = create_model("ppca", latent_dim=5)     # built for the entry's default dataset
    zm = create_model("ppca", data=my_dataset, guide="amortized")
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.data import DataInfo, Dataset, dataset_info, from_tensors
from zoo.models import FAMILIES
from zoo.spec import ModelSpec, ZooModel, config_from_dict
from zoo.util import local_params, unknown_choice

__all__ = ["create_model", "get_spec", "list_models", "register_model"]

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry and return it.

    :raises ValueError: if the name is taken and ``replace`` is false.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register_model takes a ModelSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


for _family in FAMILIES:
    for _spec in _family.SPECS:
        register_model(_spec)


def list_models(family: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally of one family."""
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``.

    :raises ValueError: naming the closest registered names when ``name`` is unknown.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_choice("model", name, list_models()) from None


def _as_info(data: Dataset | DataInfo | torch.Tensor | None, spec: ModelSpec) -> DataInfo:
    if data is None:
        return dataset_info(spec.dataset, **spec.dataset_kwargs)
    if isinstance(data, DataInfo):
        return data
    if isinstance(data, Dataset):
        return data.info
    if isinstance(data, torch.Tensor):
        return from_tensors(data[:1]).info
    raise TypeError(f"data must be a Dataset, DataInfo, tensor or None, got {type(data).__name__}")


@local_params()
def create_model(
    name: str,
    *,
    data: Dataset | DataInfo | torch.Tensor | None = None,
    guide: str | None = None,
    seed: int | None = None,
    **overrides: Any,
) -> ZooModel:
    """Build the registered model ``name`` with its guide.

    :param name: a name from :func:`list_models`.
    :param data: the dataset (or its :class:`~zoo.data.DataInfo`, or an input tensor) the model is
        built for; the entry's default dataset when omitted.  Only shapes are read.
    :param guide: a guide name of the entry; its default when omitted.
    :param seed: seeds torch, numpy and ``random`` before the parameters are initialized.
    :param overrides: fields of the entry's config dataclass.
    :raises ValueError: for an unknown model, guide or config field, naming the closest matches.
    """
    import pyro  # local: keeps `zoo list` start-up light

    spec = get_spec(name)
    config = config_from_dict(spec.config, overrides)
    guide_name = spec.default_guide if guide is None else guide
    if guide_name not in spec.guides:
        raise unknown_choice(f"guide for {name!r}", guide_name, sorted(spec.guides))
    info = _as_info(data, spec)
    if seed is not None:
        pyro.set_rng_seed(seed)
    model = spec.build_model(config, info)
    guide_module = spec.guides[guide_name](config, info, model)
    handler = None if spec.hooks.handler is None else spec.hooks.handler(config)
    return ZooModel(spec, config, info, guide_name, model, guide_module, handler)
