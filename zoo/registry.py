"""The model registry: the single source of truth for the CLI, the benchmarks and the tests.

An entry (:class:`ModelSpec`) bundles a model builder, the guide builders it can be paired
with (one of them the default), the ELBO it trains with, its default dataset and its default
configuration, a frozen dataclass.  :func:`create_model` turns an entry into a ready
:class:`ZooModel` (model + guide) for a given dataset shape.

Usage::

    from zoo import create_model, list_models
    list_models()                               # ['bpca', 'ppca', ...]
    zm = create_model("ppca", latent_dim=5)     # built for the entry's default dataset
    zm = create_model("ppca", data=my_dataset, guide="amortized")
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.data import DataInfo, Dataset, dataset_info, from_tensors

__all__ = [
    "ELBO_NAMES",
    "ModelSpec",
    "PointwiseDraws",
    "ZooModel",
    "config_from_dict",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]

#: The ELBO objectives the trainer understands (see :mod:`zoo.train`).
ELBO_NAMES = ("trace", "meanfield", "tracegraph", "traceenum")

ModelBuilder = Callable[[Any, DataInfo], nn.Module]
GuideBuilder = Callable[[Any, DataInfo, nn.Module], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    :param name: registry key, lower case with hyphens (``"ppca"``).
    :param family: the model family, one file in ``zoo/models`` (``"ppca"``).
    :param description: one line for ``zoo list``.
    :param config: the default configuration, an instance of a frozen dataclass.
    :param build_model: ``(config, info) -> PyroModule`` whose ``forward(x, y=None, num_data=None)``
        is the generative process.
    :param guides: guide builders ``(config, info, model) -> nn.Module`` by name; each guide takes
        the model's arguments and emits exactly its latent sites.
    :param default_guide: the key of ``guides`` used when none is asked for.
    :param elbo: one of :data:`ELBO_NAMES`.
    :param dataset: name of the default dataset in :mod:`zoo.data`.
    :param dataset_kwargs: keyword arguments for that dataset's loader.
    :param max_plate_nesting: passed to the ELBO (needed for vectorized particles and enumeration).
    :param evaluate: ``(zoo_model, x, y) -> dict[str, float]`` family metrics on one split; cheap
        enough to run at every epoch.
    :param evaluate_with_extras: also pass ``extras=`` (the dataset's :attr:`~zoo.data.Dataset.
        extras`) and ``split=`` to ``evaluate``, for metrics against ground truth that the model
        never sees (attention: the object's true tile).
    :param plot: ``(zoo_model, dataset, out_dir) -> list[Path]`` writes the family's PNGs.
    :param post_step: ``(zoo_model) -> None``, run under ``no_grad`` after every optimizer step:
        closed-form coordinate updates such as the ARD precisions of Bayesian PCA.
    :param train_defaults: :class:`zoo.train.TrainConfig` fields this family trains best with.
    :param train_defaults_for: ``(config) -> Mapping``, fields that depend on the model's
        configuration and replace those of ``train_defaults`` (the VAE's score-function
        estimators need a smaller learning rate than its reparameterized one); read them
        through :meth:`training_defaults`.
    :param reference: the paper the model follows.
    :param report: ``(zoo_model) -> DataFrame``, a table the CLI prints and writes as
        ``report.csv`` after training and evaluation (BNNs: the per-layer pruning report).
    :param export: ``(zoo_model) -> dict[str, Tensor]``, the state dict of a deterministic network
        distilled from the fit (BNNs: the pruned posterior means), written by ``zoo export``.
    :param handler: ``(config) -> Messenger | None``, an effect handler that wraps model and guide
        alike whenever they run for inference or prediction (one shared instance per built
        model), such as :class:`guides.lrt.LocalReparameterization`.
    :param log_likelihood: ``(zoo_model, x, y, num_samples, batch_size, samples=None) ->``
        :class:`PointwiseDraws`: ``log p(y_i | x_i, theta_s)`` for ``S`` draws ``theta_s`` of the
        global latents (from the guide, or the given ``samples``: site name -> ``(S, ...)``),
        every example scored under the same draw, as PSIS-LOO and WAIC need.  Used by
        :mod:`zoo.compare`; entries without it cannot be compared.
    :param observes: what the likelihood is of: ``"y"`` (targets given inputs, ``p(y | x)``) or
        ``"x"`` (the inputs themselves, ``p(x)``, as for PPCA).  Only models observing the same
        thing have comparable elpds.
    :param batch_transform: ``(zoo_model, x, y) -> (x, y)``, applied by the trainer to every
        minibatch before model and guide see it, so both see the same tensors (VAEs: dynamic
        binarization, a fresh Bernoulli draw of each image at each step, Burda et al. 2016).
    :param elbo_for: ``(config, train_config) -> str``, the ELBO for this configuration when it
        depends on it, or a ``ValueError`` for a combination the family cannot train (VAEs: the
        score-function estimators with baselines need ``tracegraph``).  ``train_config`` is a
        :class:`zoo.train.TrainConfig` or ``None``; it replaces ``elbo`` when given.
    """

    name: str
    family: str
    description: str
    config: Any
    build_model: ModelBuilder
    guides: Mapping[str, GuideBuilder]
    default_guide: str
    elbo: str = "trace"
    dataset: str = "digits"
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_plate_nesting: int = 1
    evaluate: Callable[..., dict[str, float]] | None = None
    evaluate_with_extras: bool = False
    plot: Callable[..., list] | None = None
    post_step: Callable[[ZooModel], None] | None = None
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    reference: str = ""
    report: Callable[[ZooModel], Any] | None = None
    export: Callable[[ZooModel], dict] | None = None
    handler: Callable[[Any], Any] | None = None
    log_likelihood: Callable[..., PointwiseDraws] | None = None
    observes: str = "y"
    batch_transform: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None
    elbo_for: Callable[[Any, Any], str] | None = None
    train_defaults_for: Callable[[Any], Mapping[str, Any]] | None = None

    def training_defaults(self, config: Any | None = None) -> dict[str, Any]:
        """The :class:`zoo.train.TrainConfig` fields for a model built with ``config`` (the
        entry's default configuration when ``None``): ``train_defaults`` updated by
        ``train_defaults_for(config)``."""
        out = dict(self.train_defaults)
        if self.train_defaults_for is not None:
            out.update(self.train_defaults_for(self.config if config is None else config))
        return out

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config) or isinstance(self.config, type):
            raise TypeError(f"{self.name}: config must be a dataclass instance")
        if not self.config.__dataclass_params__.frozen:
            raise TypeError(f"{self.name}: config must be a frozen dataclass")
        if self.default_guide not in self.guides:
            raise ValueError(
                f"{self.name}: default guide {self.default_guide!r} is not among its guides "
                f"{sorted(self.guides)}"
            )
        if self.observes not in ("x", "y"):
            raise ValueError(f"{self.name}: observes must be 'x' or 'y', got {self.observes!r}")
        if self.elbo not in ELBO_NAMES:
            raise ValueError(f"{self.name}: elbo must be one of {ELBO_NAMES}, got {self.elbo!r}")


@dataclass
class PointwiseDraws:
    """What an entry's ``log_likelihood`` hook returns for ``S`` posterior draws and ``N`` examples.

    :ivar log_lik: ``log p(y_i | x_i, theta_s)``, shape ``(S, N)``, float64 on the CPU.
    :ivar posterior: named per-draw quantities of low dimension (weight norms per layer, noise
        scales), each of shape ``(S, ...)``, for ArviZ's ``posterior`` group; never the weights.
    :ivar dims: the extra dimension names of each ``posterior`` entry, with their labels.
    :ivar predictive_mean: the posterior predictive mean per example: class probabilities
        ``(N, C)`` averaged over the draws for classifiers, ``E[f(x)]`` ``(N,)`` for regressors,
        ``None`` where it does not apply.
    """

    log_lik: torch.Tensor
    posterior: dict[str, torch.Tensor] = field(default_factory=dict)
    dims: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    predictive_mean: torch.Tensor | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry and return it.

    :raises ValueError: if the name is taken and ``replace`` is false.
    """
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(family: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally of one family."""
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def _unknown(kind: str, name: str, choices: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(choices)}.")


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``.

    :raises ValueError: naming the closest registered names when ``name`` is unknown.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown("model", name, list_models()) from None


def config_from_dict(default: Any, values: Mapping[str, Any]) -> Any:
    """Return ``default`` with ``values`` replaced, checking names and coercing JSON-ish values.

    Lists become tuples where the field is a tuple (configs are stored as plain dicts in
    checkpoints).  The dataclass's own ``__post_init__`` validates the values.

    :raises ValueError: for an unknown field, naming the closest ones.
    """
    names = [f.name for f in dataclasses.fields(default)]
    hints = typing.get_type_hints(type(default))
    clean = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(f"option for {type(default).__name__}", key, names)
        if isinstance(value, list) and "tuple" in str(hints.get(key, "")):
            value = tuple(value)
        clean[key] = value
    return dataclasses.replace(default, **clean)


@dataclass(eq=False)
class ZooModel:
    """A built registry entry: the model, its guide and everything needed to train and rebuild it.

    ``model`` and ``guide`` are ``nn.Module`` s (usually ``PyroModule`` s); a guide may read the
    model's parameters (an analytic posterior does) but never registers the model as a submodule,
    so :meth:`parameters` and :meth:`state_dict` hold each tensor once.
    """

    spec: ModelSpec
    config: Any
    info: DataInfo
    guide_name: str
    model: nn.Module
    guide: nn.Module
    handler: Any = None
    #: Set by :func:`zoo.fit`: the training data's fingerprint, size, source and the wall time,
    #: so that :func:`zoo.compare` can refuse models fitted on different data.
    fitted_on: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def elbo(self) -> str:
        """The ELBO this model trains with by default (its entry's, or its configuration's)."""
        if self.spec.elbo_for is not None:
            return self.spec.elbo_for(self.config, None)
        return self.spec.elbo

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    def callables(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """Model and guide as inference runs them: inside the entry's effect handler, if any."""
        if self.handler is None:
            return self.model, self.guide
        return self.handler(self.model), self.handler(self.guide)

    def parameters(self) -> Iterator[nn.Parameter]:
        """Model then guide parameters, each once, in a fixed order (the optimizer relies on it)."""
        seen: set[int] = set()
        for module in (self.model, self.guide):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def to(self, device: torch.device | str) -> ZooModel:
        self.model.to(device)
        self.guide.to(device)
        return self

    def train(self, mode: bool = True) -> ZooModel:
        self.model.train(mode)
        self.guide.train(mode)
        return self

    def eval(self) -> ZooModel:
        return self.train(False)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "guide": self.guide.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.guide.load_state_dict(state["guide"])

    def describe(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this model (plain, JSON-able values)."""
        return {
            "name": self.name,
            "guide": self.guide_name,
            "config": dataclasses.asdict(self.config),
            "info": dataclasses.asdict(self.info),
        }

    def evaluate(self, data: Dataset, split: str = "test") -> dict[str, float]:
        """The family's metrics on ``split`` (``"train"`` or ``"test"``) of ``data``."""
        if self.spec.evaluate is None:
            return {}
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        if x.shape[0] == 0:
            return {}
        kwargs = {"extras": data.extras, "split": split} if self.spec.evaluate_with_extras else {}
        with torch.no_grad():
            return self.spec.evaluate(
                self, x.to(self.device), None if y is None else y.to(self.device), **kwargs
            )


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
        raise _unknown(f"guide for {name!r}", guide_name, sorted(spec.guides))
    info = _as_info(data, spec)
    if seed is not None:
        pyro.set_rng_seed(seed)
    model = spec.build_model(config, info)
    guide_module = spec.guides[guide_name](config, info, model)
    handler = None if spec.handler is None else spec.handler(config)
    return ZooModel(spec, config, info, guide_name, model, guide_module, handler)
