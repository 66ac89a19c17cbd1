"""What a registry entry is, and what it builds: :class:`ModelSpec` and :class:`ZooModel`.

A model is net × prior × likelihood × guide.  An entry names that recipe: the core of a
:class:`ModelSpec` is a model builder, the guide builders it pairs with, the ELBO it trains
with, its default dataset and its configuration (a frozen dataclass); optional behaviour
(metrics, plots, pruning reports, an effect handler, the pointwise log-likelihood that
:mod:`zoo.compare` needs...) sits apart in :class:`Hooks`.  :func:`zoo.registry.create_model`
turns an entry into a :class:`ZooModel`, the model and its guide, ready for
:func:`zoo.train.fit`.

This module sits below the model families (which build their entries from it) and above the
guides; it imports neither.

Usage::

    from zoo.spec import Hooks, ModelSpec
    spec = ModelSpec(
        name="my-net", family="bnn", description="...", config=MyConfig(),
        build_model=build, guides={"meanfield": meanfield}, default_guide="meanfield",
        hooks=Hooks(metrics=accuracy),
    )
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro import poutine
from pyro.poutine import Trace
from torch import nn

from zoo.data import DataInfo, Dataset, as_dataset, validate_tensors
from zoo.elbo import ELBO_NAMES
from zoo.util import ensure_local_params, local_params, unknown_choice

__all__ = [
    "Hooks",
    "ModelSpec",
    "PointwiseDraws",
    "ZooModel",
    "check_compatible",
    "config_from_dict",
    "eval_batch_size",
    "posterior_draws",
    "resolve_elbo",
]

ModelBuilder = Callable[[Any, DataInfo], nn.Module]
GuideBuilder = Callable[[Any, DataInfo, nn.Module], nn.Module]


@dataclass(frozen=True)
class Hooks:
    """Optional behaviour of a registry entry; every hook may be left ``None``.

    Training:

    :param handler: ``(config) -> Messenger | None``, an effect handler that wraps model and guide
        alike whenever they run for inference or prediction (one shared instance per built
        model), such as :class:`zoo.handlers.lrt.LocalReparameterization`.
    :param post_step: ``(zoo_model) -> None``, run under ``no_grad`` after every optimizer step:
        closed-form coordinate updates such as the ARD precisions of Bayesian PCA.
    :param closed_form_step: ``(zoo_model, x, y, num_data) -> loss``, run by the trainer
        instead of the ELBO's loss and gradients: a closed-form update on the minibatch (Bayesian
        PCA by VB: one coordinate-ascent sweep, :mod:`zoo.models.bpca`) that returns ``-ELBO``;
        the optimizer then has no gradients to apply.
    :param batch_transform: ``(zoo_model, x, y) -> (x, y)``, applied by the trainer to every
        minibatch before model and guide see it, so both see the same tensors (VAEs: dynamic
        binarization, a fresh Bernoulli draw of each image at each step, Burda et al. 2016).
    :param elbo_for: ``(config, train_config) -> str``, the ELBO for this configuration when it
        depends on it, or a ``ValueError`` for a combination the family cannot train (VAEs: the
        score-function estimators with baselines need ``tracegraph``).  ``train_config`` is a
        :class:`zoo.train.TrainConfig` or ``None``; it replaces ``elbo`` when given.
    :param train_defaults_for: ``(config) -> Mapping``, :class:`zoo.train.TrainConfig` fields
        that depend on the model's configuration and replace those of ``train_defaults`` (the
        VAE's score-function estimators need a smaller learning rate than its reparameterized
        one); read them through :meth:`ModelSpec.training_defaults`.
    :param train_defaults_for_data: ``(config, num_train, given) -> Mapping``, fields that
        depend on the number of training examples as well (and may depend on ``given``, the
        fields a caller sets, say its ``num_epochs``), applied after ``train_defaults_for``
        when the data are known (:func:`zoo.fit`, ``zoo train``): a user's sparse-VD net
        switches the KL on later, and trains longer on small data
        (:func:`zoo.models.custom.train_defaults_for_data`).

    Evaluation and output:

    :param metrics: ``(zoo_model, x, y) -> dict[str, float]`` family metrics on one split; cheap
        enough to run at every epoch.  :meth:`ZooModel.evaluate` calls it.
    :param metrics_with_extras: also pass ``extras=`` (the dataset's
        :attr:`~zoo.data.Dataset.extras`) and ``split=`` to ``metrics``, for metrics against
        ground truth that the model never sees (attention: the object's true tile).
    :param plot: ``(zoo_model, dataset, out_dir) -> list[Path]`` writes the family's PNGs.
    :param report: ``(zoo_model) -> DataFrame``, a table the CLI prints and writes as
        ``report.csv`` after training and evaluation (BNNs: the per-layer pruning report).
    :param export: ``(zoo_model) -> dict[str, Tensor]``, the state dict of a deterministic network
        distilled from the fit (BNNs: the pruned posterior means), written by ``zoo export``.
    :param log_likelihood: ``(zoo_model, x, y, num_samples, batch_size, samples=None) ->``
        :class:`PointwiseDraws`: ``log p(y_i | x_i, theta_s)`` for ``S`` draws ``theta_s`` of the
        global latents (from the guide, or the given ``samples``: site name -> ``(S, ...)``),
        every example scored under the same draw, as PSIS-LOO and WAIC need.  Used by
        :mod:`zoo.compare`; entries without it cannot be compared.
    """

    handler: Callable[[Any], Any] | None = None
    post_step: Callable[[ZooModel], None] | None = None
    closed_form_step: Callable[..., float] | None = None
    batch_transform: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None
    elbo_for: Callable[[Any, Any], str] | None = None
    train_defaults_for: Callable[[Any], Mapping[str, Any]] | None = None
    train_defaults_for_data: Callable[[Any, int, Mapping[str, Any]], Mapping[str, Any]] | None = (
        None
    )
    metrics: Callable[..., dict[str, float]] | None = None
    metrics_with_extras: bool = False
    plot: Callable[..., list] | None = None
    report: Callable[[ZooModel], Any] | None = None
    export: Callable[[ZooModel], dict] | None = None
    log_likelihood: Callable[..., PointwiseDraws] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: the core of a model recipe, and its optional :class:`Hooks`.

    :param name: registry key, lower case with hyphens (``"ppca"``).
    :param family: the model family, one file in ``zoo/models`` (``"ppca"``).
    :param description: one line for ``zoo list``.
    :param config: the default configuration, an instance of a frozen dataclass.
    :param build_model: ``(config, info) -> PyroModule`` whose ``forward(x, y=None, num_data=None)``
        is the generative process.
    :param guides: guide builders ``(config, info, model) -> nn.Module`` by name; each guide takes
        the model's arguments and emits exactly its latent sites.
    :param default_guide: the key of ``guides`` used when none is asked for.
    :param elbo: one of :data:`zoo.elbo.ELBO_NAMES`.
    :param dataset: name of the default dataset in :mod:`zoo.data`.
    :param dataset_kwargs: keyword arguments for that dataset's loader.
    :param max_plate_nesting: passed to the ELBO (needed for vectorized particles and enumeration).
    :param train_defaults: :class:`zoo.train.TrainConfig` fields this family trains best with.
    :param observes: what the likelihood is of: ``"y"`` (targets given inputs, ``p(y | x)``) or
        ``"x"`` (the inputs themselves, ``p(x)``, as for PPCA).  Only models observing the same
        thing have comparable elpds.
    :param reference: the paper the model follows.
    :param hooks: the optional behaviour, a :class:`Hooks`.
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
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    observes: str = "y"
    reference: str = ""
    hooks: Hooks = field(default_factory=Hooks)

    def training_defaults(
        self,
        config: Any | None = None,
        num_train: int | None = None,
        given: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The :class:`zoo.train.TrainConfig` fields for a model built with ``config`` (the
        entry's default configuration when ``None``): ``train_defaults`` updated by
        ``hooks.train_defaults_for(config)``, then, given the number of training examples
        ``num_train``, by ``hooks.train_defaults_for_data(config, num_train, given)``, then by
        ``given``, the fields the caller sets (they win)."""
        out = dict(self.train_defaults)
        config = self.config if config is None else config
        if self.hooks.train_defaults_for is not None:
            out.update(self.hooks.train_defaults_for(config))
        if num_train is not None and self.hooks.train_defaults_for_data is not None:
            out.update(self.hooks.train_defaults_for_data(config, num_train, given or {}))
        return {**out, **(given or {})}

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
        if not isinstance(self.hooks, Hooks):
            raise TypeError(f"{self.name}: hooks must be a Hooks, got {type(self.hooks).__name__}")


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
            raise unknown_choice(f"option for {type(default).__name__}", key, names)
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
    #: Set by :func:`zoo.train.fit`: the training data's fingerprint, size, source and the wall
    #: time, so that :func:`zoo.compare.compare_models` can refuse models fitted on different data.
    fitted_on: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # a model or guide built outside zoo.util.local_params() could not run in the zoo's calls
        ensure_local_params(self.model)
        ensure_local_params(self.guide)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def elbo(self) -> str:
        """The ELBO this model trains with by default (its entry's, or its configuration's)."""
        if self.spec.hooks.elbo_for is not None:
            return self.spec.hooks.elbo_for(self.config, None)
        return self.spec.elbo

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    def callables(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """Model and guide as inference runs them: inside the entry's effect handler, if any.

        They train in a plain Pyro loop too (the zoo changes no global Pyro setting; outside
        its own calls the parameters go through Pyro's global store, as for any
        ``PyroModule``):

        Usage::

            import pyro
            from pyro.infer import SVI, TraceMeanField_ELBO
            from zoo.handlers import KLAnnealing

            zm = create_model("logreg", data=data)
            model, guide = zm.callables()
            anneal = KLAnnealing.linear(end=200)    # optional KL warm-up
            svi = SVI(anneal(model), anneal(guide), pyro.optim.Adam({"lr": 0.01}),
                      TraceMeanField_ELBO())
            for step in range(600):
                svi.step(x, y, num_data=len(x))
                anneal.step()
        """
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
            "family": self.spec.family,
            "guide": self.guide_name,
            "config": dataclasses.asdict(self.config),
            "info": dataclasses.asdict(self.info),
        }

    @local_params()
    def evaluate(
        self,
        data: Dataset | torch.Tensor | tuple[torch.Tensor, ...],
        split: str | torch.Tensor | None = None,
        *,
        y: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """The family's metrics (its ``hooks.metrics``) on a split of a dataset, or on tensors
        taken as they come, as :func:`zoo.train.fit` takes them; ``{}`` for an entry without
        metrics or an empty split.

        Usage::

            zm.evaluate(data)                   # the test split of a Dataset
            zm.evaluate(data, "train")
            zm.evaluate(x, y)                   # tensors (or numpy arrays), checked as fit checks
            zm.evaluate((x, y))                 # the same, as one pair
            zm.evaluate(x)                      # an unsupervised model's inputs

        :param data: a :class:`~zoo.data.Dataset`, an input tensor, or a tuple ``(x, y)``.
        :param split: ``"train"`` or ``"test"`` (the default) of a Dataset; with an input
            tensor, the second positional argument is its labels.
        :param y: labels of an input tensor.
        :raises ValueError: for an unknown split, a split or labels beside tensors or a Dataset
            they do not belong to, or tensors :func:`zoo.spec.check_compatible` refuses (other
            input shape, missing labels, non-finite values, labels out of range).
        """
        data, split = self._evaluation_data(data, split, y)
        metrics = self.spec.hooks.metrics
        if metrics is None:
            return {}
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        if x.shape[0] == 0:
            return {}
        extras = self.spec.hooks.metrics_with_extras
        kwargs = {"extras": data.extras, "split": split} if extras else {}
        with torch.no_grad():
            return metrics(
                self, x.to(self.device), None if y is None else y.to(self.device), **kwargs
            )

    def _evaluation_data(
        self, data: Any, split: str | torch.Tensor | None, y: torch.Tensor | None
    ) -> tuple[Dataset, str]:
        if isinstance(data, Dataset):
            if y is not None or not (split is None or isinstance(split, str)):
                raise ValueError("pass labels inside the Dataset, not as y, when data is a Dataset")
            split = "test" if split is None else split
            if split not in ("train", "test"):
                raise ValueError(f"split must be 'train' or 'test', got {split!r}")
            return data, split
        if isinstance(split, str):
            raise ValueError(
                f"split={split!r} applies to a Dataset; tensors are scored as they are given"
            )
        if isinstance(data, tuple):
            if split is not None or y is not None or len(data) not in (1, 2):
                raise ValueError("pass tensors as (x,) or (x, y), or as x and y, not both")
            data, y = data if len(data) == 2 else (data[0], None)
        elif split is not None:
            if y is not None:
                raise ValueError("labels given twice: as the second argument and as y")
            y = split
        if self.info.task == "unsupervised" and y is not None:
            raise ValueError(f"{self.name} is unsupervised and takes no labels y")
        data = as_dataset(data, y)
        check_compatible(self, data)
        return data, "train"


def resolve_elbo(zm: ZooModel, config: Any = None) -> str:
    """The ELBO a run of ``zm`` uses: the entry's ``elbo_for`` hook when it has one (it may
    refuse the combination), else ``config.elbo`` (a :class:`zoo.train.TrainConfig`), else the
    entry's default."""
    if zm.spec.hooks.elbo_for is not None:
        return zm.spec.hooks.elbo_for(zm.config, config)
    return (None if config is None else config.elbo) or zm.elbo


def check_compatible(zm: ZooModel, data: Dataset) -> None:
    """Refuse ``data`` that ``zm`` cannot be fitted or scored on.

    :raises ValueError: for inputs of another shape than ``zm`` was built for, missing labels,
        an empty training split, or tensors that fail :func:`zoo.data.validate_tensors`.
    """
    info = zm.info
    if tuple(data.info.input_shape) != tuple(info.input_shape):
        raise ValueError(
            f"{zm.name} was built for inputs of shape {info.input_shape}, but the data has "
            f"{data.info.input_shape}; rebuild it with create_model(..., data=data)"
        )
    if info.task != "unsupervised" and data.y_train is None:
        raise ValueError(f"{zm.name} is a {info.task} model and needs labels y")
    if data.num_train == 0:
        raise ValueError("the training split is empty")
    # Loaders validate already; a hand-made Dataset may not have been.
    task = None if info.task == "unsupervised" else info.task
    y_train = data.y_train if task else None
    validate_tensors(
        data.x_train, y_train, task=task, num_classes=info.num_classes, where="x_train"
    )
    if data.num_test:
        y_test = data.y_test if task else None
        validate_tensors(
            data.x_test, y_test, task=task, num_classes=info.num_classes, where="x_test"
        )


def eval_batch_size(zm: ZooModel, batch_size: int | None) -> int:
    """``batch_size``, or the config's ``eval_batch_size`` (else 2000) when ``None``."""
    size = getattr(zm.config, "eval_batch_size", 2000) if batch_size is None else batch_size
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    return size


@local_params()
def posterior_draws(
    zm: ZooModel,
    x: torch.Tensor,
    num_samples: int,
    read: Callable[[Trace], torch.Tensor],
    batch_size: int | None = None,
) -> torch.Tensor:
    """``read(trace)`` of the model replayed on ``num_samples`` fresh guide draws, stacked
    ``(S, N, ...)``.

    Each batch of ``x`` gets its own guide draw, inside the entry's effect handler (with the
    local reparameterization or MC dropout the noise is per example, as in training), and the
    model is replayed on it; ``read`` picks what to keep from the model's trace.

    :param batch_size: examples per forward pass; the config's ``eval_batch_size`` when omitted.
    """
    size = eval_batch_size(zm, batch_size)
    model, guide = zm.callables()
    draws = []
    for _ in range(num_samples):
        parts = []
        for start in range(0, x.shape[0], size):
            xb = x[start : start + size]
            guide_trace = poutine.trace(guide).get_trace(xb)
            parts.append(
                read(poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(xb))
            )
        draws.append(torch.cat(parts))
    return torch.stack(draws)
