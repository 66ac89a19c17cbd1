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

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.data import DataInfo, Dataset, dataset_info, from_tensors
from zoo.likelihoods import Likelihood
from zoo.models import FAMILIES, custom
from zoo.priors import Prior
from zoo.spec import ModelSpec, ZooModel, config_from_dict
from zoo.util import local_params, unknown_choice

__all__ = [
    "create_model",
    "from_module",
    "get_spec",
    "list_models",
    "model_from_description",
    "register_model",
]

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


def _as_info(data: Dataset | DataInfo | torch.Tensor | None, spec: ModelSpec | None) -> DataInfo:
    if data is None and spec is None:
        raise ValueError("pass data=: the dataset (or its DataInfo) the net is built for")
    if data is None:
        return dataset_info(spec.dataset, **spec.dataset_kwargs)
    if isinstance(data, DataInfo):
        return data
    if isinstance(data, Dataset):
        return data.info
    if isinstance(data, torch.Tensor):
        return from_tensors(data[:1]).info
    raise TypeError(f"data must be a Dataset, DataInfo, tensor or None, got {type(data).__name__}")


def _assemble(
    spec: ModelSpec, config: Any, info: DataInfo, guide: str | None, model: nn.Module
) -> ZooModel:
    guide_name = spec.default_guide if guide is None else guide
    if guide_name not in spec.guides:
        raise unknown_choice(f"guide for {spec.name!r}", guide_name, sorted(spec.guides))
    guide_module = spec.guides[guide_name](config, info, model)
    handler = None if spec.hooks.handler is None else spec.hooks.handler(config)
    return ZooModel(spec, config, info, guide_name, model, guide_module, handler)


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
    if guide is not None and guide not in spec.guides:
        raise unknown_choice(f"guide for {name!r}", guide, sorted(spec.guides))
    info = _as_info(data, spec)
    if seed is not None:
        pyro.set_rng_seed(seed)
    return _assemble(spec, config, info, guide, spec.build_model(config, info))


@local_params()
def from_module(
    net: nn.Module | Callable[..., nn.Module] | str,
    *,
    data: Dataset | DataInfo | torch.Tensor,
    prior: str | Prior = "loguniform",
    guide: str | None = None,
    likelihood: str | Likelihood | None = None,
    layers: Any = None,
    name: str = "own-net",
    seed: int | None = None,
    **config: Any,
) -> ZooModel:
    """A user's network made Bayesian: net × prior × likelihood × guide, as a :class:`ZooModel`
    that :func:`zoo.fit`, :meth:`~zoo.spec.ZooModel.evaluate`, :func:`zoo.compare_models`, the
    uncertainty scores, checkpoints and ``zoo export`` take like a registry entry.

    The weights of the chosen ``Linear`` and ``Conv1d/2d/3d`` layers become sample sites with
    ``prior`` (:meth:`zoo.priors.Prior.apply_`); other layers with parameters stay
    deterministic, point-estimated, and are named in a warning and in the pruning report.
    ``net`` itself is never changed: the model holds a copy, and its current weights are the
    guide's initial means (so a pretrained net starts where it is).  Training defaults:
    :data:`zoo.models.custom.TRAIN_DEFAULTS`; with the log-uniform prior, the KL off for the
    first third of the epochs and more epochs on small data
    (:func:`zoo.models.custom.train_defaults_for_data`, docs/own-model.md).

    :param net: an ``nn.Module``; or a function building one, called with the data's
        :class:`~zoo.data.DataInfo` if it takes an argument; or a reference to such a function,
        ``"package.module:function"`` or ``"path/to/file.py:function"``.  A named function (or
        a reference) is recorded in checkpoints, so ``zoo evaluate`` can rebuild the model; a
        module instance must be given again to :func:`zoo.jobs.from_checkpoint` (``net=``).
    :param data: the dataset (or its :class:`~zoo.data.DataInfo`, or an input tensor) the net is
        built for; only shapes and the task are read.
    :param prior: ``"loguniform"`` (sparse VD), ``"normal"`` (``N(0, prior_scale^2)``),
        ``"sbp"`` (:class:`~zoo.structured.SBP` with its defaults) or a
        :class:`~zoo.priors.Prior` (``SBP(...)`` is recorded by its fields; a prior of your
        own must be given again to :func:`zoo.jobs.from_checkpoint`).
    :param guide: ``"sparse-vd"``, ``"vd-layer"``, ``"vd-unit"``, ``"meanfield"`` or
        ``"mc-dropout"``; ``sparse-vd`` for the log-uniform prior and ``meanfield`` for the
        normal one when omitted.
    :param likelihood: ``"categorical"``, ``"bernoulli"``, ``"normal"`` or a
        :class:`~zoo.likelihoods.Likelihood`; Categorical for classification data and Normal
        with learned noise for regression when omitted.
    :param layers: which layers become Bayesian (all ``Linear``/``ConvNd`` when omitted): a
        layer type or tuple of types, a list of qualified names or glob patterns, or a
        ``(name, module) -> bool`` function.
    :param name: the model's name in tables and checkpoints; not a registered name.
    :param seed: seeds torch, numpy and ``random`` before the net (when built here) and the
        guide are initialized.
    :param config: fields of :class:`zoo.models.custom.ModuleConfig` (``threshold``,
        ``init_log_sigma2``, ``init_scale``, ``reparam``, ``noise``, ...).
    :raises ValueError: for an unknown guide, likelihood or option, a likelihood that does not
        fit the data, a net whose outputs do not match the likelihood, or a registered name.

    Usage::

        import zoo
        from torch import nn
        data = zoo.load("digits")
        net = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))
        zm = zoo.from_module(net, data=data, prior="loguniform", guide="sparse-vd")
        zoo.fit(zm, data, num_epochs=30)
        zm.evaluate(data)                  # acc, nll, mc_acc, ..., sparsity, compression
    """
    import pyro  # local: keeps `zoo list` start-up light

    if name in _REGISTRY:
        raise ValueError(f"{name!r} is a registered model's name; choose another name=")
    info = _as_info(data, None)
    factory, ref = custom.net_factory(net, info)
    fields = {
        **custom.describe_prior(prior),
        **custom.describe_likelihood(likelihood, info),
        "net": ref,
        **config,
    }
    cfg = config_from_dict(custom.ModuleConfig(), fields)
    parts = {
        "prior": prior if cfg.prior == "custom" else None,
        "likelihood": likelihood if cfg.likelihood == "custom" else None,
    }
    if guide is not None and guide not in custom.ALL_GUIDES:
        raise unknown_choice("guide", guide, sorted(custom.ALL_GUIDES))
    if guide == "mc-dropout" and cfg.prior == "loguniform":
        raise ValueError(
            "the mc-dropout guide puts point masses at w = 0, where the log-uniform prior has "
            "infinite density (the KL is infinite): use prior='normal' with mc-dropout"
        )
    if seed is not None:
        pyro.set_rng_seed(seed)
    model = custom.build_model(cfg, info, factory, layers=layers, **parts)
    cfg = dataclasses.replace(cfg, layers=custom.bayesian_layers(model))
    spec = custom.module_spec(name, cfg, factory, **parts)
    return _assemble(spec, cfg, info, guide, model)


@local_params()
def model_from_description(
    desc: dict[str, Any],
    *,
    net: nn.Module | Callable[..., nn.Module] | str | None = None,
    prior: Prior | None = None,
    likelihood: Likelihood | None = None,
) -> ZooModel:
    """Rebuild, untrained, the model that :meth:`ZooModel.describe` described (a checkpoint's
    ``"model"``): a registry entry by name, a user's net (:func:`from_module`) from the
    reference its configuration records.

    :param net: a user's net again (an instance, function or reference), needed when it was
        given as an instance; replaces the recorded reference otherwise.
    :param prior: a user's own :class:`~zoo.priors.Prior` object, when one was used.
    :param likelihood: a user's own :class:`~zoo.likelihoods.Likelihood` object, when one was.
    :raises ValueError: for an unknown entry, or a user's net that cannot be rebuilt without
        ``net=`` (the message says so).
    """
    info = DataInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in desc["info"].items()})
    if desc.get("family") != custom.FAMILY:
        return create_model(desc["name"], data=info, guide=desc["guide"], **desc["config"])
    cfg = config_from_dict(custom.ModuleConfig(), desc["config"])
    if net is None and not cfg.net:
        raise ValueError(
            f"{desc['name']!r} is a user's net given as an instance, which a checkpoint cannot "
            "name: pass the same architecture again (from_checkpoint(path, net=...)), or build "
            "it from a function (zoo.from_module(make_net, ...)) so that it is recorded"
        )
    factory, _ = custom.net_factory(cfg.net if net is None else net, info)
    parts = {"prior": prior, "likelihood": likelihood}
    model = custom.build_model(cfg, info, factory, **parts)
    spec = custom.module_spec(desc["name"], cfg, factory, **parts)
    return _assemble(spec, cfg, info, desc["guide"], model)
