"""A user's own network as a Bayesian model: the parts :func:`zoo.from_module` puts together.

A model is net × prior × likelihood × guide.  Here the net is the user's ``nn.Module`` (or a
function that builds one), the prior and guide those of :mod:`zoo.models.bnn`, and the
likelihood one of :mod:`zoo.likelihoods`.  The result is a :class:`~zoo.spec.ZooModel` with
the BNN family's behaviour (pruning report, export, pointwise log-likelihoods, the local
reparameterization), so ``fit``, ``evaluate``, the comparison, the uncertainty scores and
``zoo export`` take it like a registry entry.

What a checkpoint needs to rebuild it is the :class:`ModuleConfig`: the net as a reference to
the function that builds it (``"package.module:function"`` or ``"path/to/file.py:function"``),
the names of the layers made Bayesian, the prior's, likelihood's and guide's settings.  A net
given as an instance cannot be named that way; rebuilding it then takes the same architecture
again (``zoo.jobs.from_checkpoint(path, net=...)``).

Usage::

    from zoo import fit, from_module, load
    data = load("digits")
    net = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))
    zm = from_module(net, data=data, prior="loguniform", guide="sparse-vd")
    fit(zm, data, num_epochs=30)
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from zoo.data import DataInfo
from zoo.likelihoods import LIKELIHOODS, Bernoulli, Categorical, Likelihood, Normal, make_likelihood
from zoo.models.bnn import BNN, GUIDES, HOOKS, PRIORS, REFERENCE, WeightConfig
from zoo.models.structured import GUIDES as SBP_GUIDES
from zoo.models.structured import STRUCTURED_HOOKS, SBPFields
from zoo.priors import LogUniform, Prior, weight_sites
from zoo.priors import Normal as NormalPrior
from zoo.spec import ModelSpec
from zoo.structured import SBP, SBP_THRESHOLD, unit_sites

__all__ = [
    "ALL_GUIDES",
    "FAMILY",
    "SMALL_DATA",
    "SMALL_DATA_EXAMPLES",
    "TRAIN_DEFAULTS",
    "ModuleConfig",
    "bayesian_layers",
    "build_model",
    "build_with",
    "describe_likelihood",
    "describe_prior",
    "is_net_reference",
    "load_factory",
    "module_spec",
    "net_factory",
    "net_reference",
    "train_defaults_for_data",
]

#: The family name of every model :func:`zoo.from_module` builds.
FAMILY = "custom"

#: Training defaults of a user's net: Adam at 1e-3, batch 100, and the KL term switched on
#: linearly over the first 5 epochs (without a warm-up sparse VD prunes everything before the
#: net has learned anything, Molchanov et al. 2017).  A net with the log-uniform prior trains
#: by :func:`train_defaults_for_data` instead (longer on small data, the KL on later).
TRAIN_DEFAULTS = {"num_epochs": 30, "batch_size": 100, "lr": 1e-3, "kl_warmup_end": 5}
#: Every guide a user's net can take: the weight guides, and ``sbp`` for an SBP prior.
ALL_GUIDES = {**GUIDES, **SBP_GUIDES}

#: Examples a sparse-VD run passes at least (3000 steps of 100), whatever its epochs.
SMALL_DATA_EXAMPLES = 300_000
#: Training examples below which that takes more than 30 epochs: small data.
SMALL_DATA = SMALL_DATA_EXAMPLES // 30


def train_defaults_for_data(
    config: ModuleConfig, num_train: int, given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Training defaults of a user's net with the log-uniform prior (sparse VD), which depend
    on the number of training examples (``{}`` for the other priors: :data:`TRAIN_DEFAULTS`):
    ``E = max(30, ceil(300000 / num_train))`` epochs (at least :data:`SMALL_DATA_EXAMPLES`
    examples, 3000 steps of 100: more than 30 epochs below :data:`SMALL_DATA` examples), with
    the KL term off (``beta = 0``: the means pretrained as a plain net's) for the first third
    of the epochs, ramped linearly over the second third, and whole over the last.  When the
    caller sets ``num_epochs`` (in ``given``, the fields it sets), the thirds are of those
    epochs; when it sets either end of the warm-up, the warm-up is its own.

    Why: with :data:`TRAIN_DEFAULTS` on small data (30 epochs of a few dozen steps, the KL on
    over the first 5) the KL reached full weight after a hundred-odd steps, before the net had
    learned the data, and sparse VD pruned what it needed: 19.2 % test accuracy against 56.3 %
    for a plain MLP on a 10-class set of 2400 examples; with this rule 56.3 %, and within 2
    points of the plain net on five small sets (``benchmarks/small_data.py``, docs/own-model.md).
    Pretraining the means first is how Molchanov et al. (2017) train their larger nets.  With
    N examples the log-likelihood weighs N against a KL that grows with the number of weights
    kept, so at the ELBO's optimum a small data set prunes more than accuracy allows (more
    epochs at full KL lower the accuracy further): the rule ends, in its last third, before
    that optimum is reached.  On 10,000 and 48,000 Fashion-MNIST images too (30 epochs either
    way) the thirds gave a higher validation and test accuracy than the 5-epoch warm-up (83.6
    against 81.9 %, seeds 0-2; 87.3 against 86.3 %, seeds 0-1), at a lower sparsity (96.1
    against 97.8 %, 83.4 against 90.2 %): pass ``kl_warmup_end=5`` for the former, more
    compressed recipe.

    Usage::

        train_defaults_for_data(ModuleConfig(), 2400)
        # {'num_epochs': 125, 'kl_warmup_start': 42, 'kl_warmup_end': 83}
        train_defaults_for_data(ModuleConfig(), 60000)
        # {'num_epochs': 30, 'kl_warmup_start': 10, 'kl_warmup_end': 20}
    """
    if config.prior != "loguniform":
        return {}
    given = given or {}
    least = math.ceil(SMALL_DATA_EXAMPLES / max(num_train, 1))
    epochs = given.get("num_epochs") or max(TRAIN_DEFAULTS["num_epochs"], least)
    out: dict[str, Any] = {"num_epochs": epochs}
    if "kl_warmup_start" not in given and "kl_warmup_end" not in given:  # else the caller's
        out.update(kl_warmup_start=round(epochs / 3), kl_warmup_end=round(2 * epochs / 3))
    return out


# SBPFields first among the bases: a dataclass's fields follow the reversed MRO, so the
# WeightConfig fields keep their place at the front (in config.json and the CLI's help).
@dataclasses.dataclass(frozen=True)
class ModuleConfig(SBPFields, WeightConfig):
    """Configuration of a user's Bayesian net (and :class:`~zoo.models.bnn.WeightConfig`'s).

    :param net: reference to the function that builds the net (``"pkg.mod:fn"`` or
        ``"/abs/path/file.py:fn"``), ``""`` when the net was given as an instance.
    :param likelihood: a key of :data:`zoo.likelihoods.LIKELIHOODS`, or ``"custom"``.
    :param noise: the Normal likelihood's (initial) noise standard deviation.
    :param learn_noise: whether the Normal likelihood learns its noise.
    :param layers: qualified names of the layers made Bayesian (recorded when the model is
        built, whatever selector chose them).

    With ``prior="sbp"``, :class:`~zoo.models.structured.SBPFields`' fields describe the prior.
    """

    net: str = ""
    likelihood: str = "categorical"
    noise: float = 1.0
    learn_noise: bool = True
    layers: tuple[str, ...] = ()

    #: ``sbp``: :class:`~zoo.structured.SBP` (recorded by its fields, so a checkpoint rebuilds
    #: it); ``custom``: a user's :class:`~zoo.priors.Prior` object, given again to rebuild
    PRIOR_CHOICES: ClassVar[tuple[str, ...]] = (*PRIORS, "sbp", "custom")

    def make_prior(self) -> Prior:
        return self.sbp_prior() if self.prior == "sbp" else super().make_prior()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.likelihood not in (*LIKELIHOODS, "custom"):
            raise ValueError(
                f"likelihood must be one of {sorted(LIKELIHOODS)} or 'custom', "
                f"got {self.likelihood!r}"
            )
        if not self.noise > 0:
            raise ValueError(f"noise must be positive, got {self.noise}")


def net_reference(factory: Callable[..., nn.Module]) -> str:
    """``"module:qualname"`` of a function defined at the top level of an importable module
    (``"/abs/path/file.py:qualname"`` for a script run as ``__main__``), or ``""`` when it has
    no such name: a lambda, a closure, a function typed into an interactive session or a
    notebook, or one of a module that was not imported from a file.

    A script's reference loads the script again as a module (:func:`load_factory`), so its
    training code belongs under ``if __name__ == "__main__":``, as usual for importable files."""
    qualname = getattr(factory, "__qualname__", "")
    name = getattr(factory, "__module__", None)
    module = sys.modules.get(name) if name else None
    if not qualname or "<" in qualname or module is None:
        return ""
    path = getattr(module, "__file__", None)
    if name == "__main__":
        return f"{Path(path).resolve()}:{qualname}" if path else ""
    if path is None and getattr(module, "__spec__", None) is None:
        return ""
    return f"{name}:{qualname}"


def is_net_reference(text: str) -> bool:
    """Whether ``text`` reads as a net reference, ``"module:function"`` or ``"file.py:function"``
    (a registry name has no colon)."""
    where, sep, name = text.rpartition(":")
    return bool(sep and where and name.replace(".", "").replace("_", "").isalnum())


def load_factory(ref: str) -> Callable[..., nn.Module]:
    """The function named by ``ref``: ``"package.module:function"`` (imported) or
    ``"path/to/file.py:function"`` (the file is run as a module).

    Loading runs the module's code, as importing it would: only name files you trust.

    :raises ValueError: for a malformed reference, a missing file or module, or a name that is
        not a callable in it.
    """
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name:
        raise ValueError(
            f"a net reference is 'package.module:function' or 'file.py:function', got {ref!r}"
        )
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"net reference {ref!r}: no file {path}")
        spec = importlib.util.spec_from_file_location(f"zoo_user_net_{abs(hash(path))}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ValueError(f"net reference {ref!r}: cannot import {where!r} ({exc})") from exc
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ValueError(f"net reference {ref!r}: {name!r} is not a function of {where}")
    return obj


def build_with(factory: Callable[..., nn.Module], info: DataInfo) -> nn.Module:
    """``factory(info)`` when it takes an argument, else ``factory()``; checked to be a module.

    :raises ValueError: when the result is not an ``nn.Module``.
    """
    try:
        takes_info = any(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(factory).parameters.values()
        )
    except (TypeError, ValueError):  # a builtin without a signature
        takes_info = False
    net = factory(info) if takes_info else factory()
    if not isinstance(net, nn.Module):
        raise ValueError(f"the net factory returned a {type(net).__name__}, not an nn.Module")
    return net


def describe_prior(prior: str | Prior) -> dict[str, Any]:
    """:class:`ModuleConfig` fields recording ``prior`` (``prior="custom"`` for a user's
    :class:`~zoo.priors.Prior` subclass, which a rebuild must be given again; ``"sbp"`` and
    its fields for :class:`~zoo.structured.SBP` itself)."""
    if prior == "sbp":  # the name stands for SBP() and its own pruning threshold
        prior = SBP()
    if isinstance(prior, str):
        return {"prior": prior}
    if isinstance(prior, NormalPrior):
        return {"prior": "normal", "prior_scale": prior.scale}
    if type(prior) is LogUniform and prior == LogUniform():
        return {"prior": "loguniform"}
    if type(prior) is SBP:  # its own pruning rule, SNR < 1
        return {
            "prior": "sbp",
            "threshold": SBP_THRESHOLD,
            "sbp_low": prior.low,
            "sbp_high": prior.high,
            "sbp_inputs": prior.inputs,
        }
    if isinstance(prior, SBP):  # a user's subclass: its own code, which no field records
        return {"prior": "custom", "threshold": SBP_THRESHOLD}
    if isinstance(prior, Prior):
        return {"prior": "custom"}
    raise TypeError(
        f"prior must be 'loguniform', 'normal', 'sbp' or a Prior, got {type(prior).__name__}"
    )


def describe_likelihood(likelihood: str | Likelihood | None, info: DataInfo) -> dict[str, Any]:
    """:class:`ModuleConfig` fields recording ``likelihood`` (``None``: the data's default)."""
    if likelihood is None or isinstance(likelihood, str):
        return {"likelihood": make_likelihood(likelihood, info).__class__.__name__.lower()}
    if type(likelihood) in (Categorical, Bernoulli):
        return {"likelihood": type(likelihood).__name__.lower()}
    if type(likelihood) is Normal:
        return {
            "likelihood": "normal",
            "noise": float(likelihood.noise.detach()),
            "learn_noise": likelihood.learn,
        }
    if isinstance(likelihood, Likelihood):
        return {"likelihood": "custom"}
    raise TypeError(f"likelihood must be a name or a Likelihood, got {type(likelihood).__name__}")


def build_model(
    config: ModuleConfig,
    info: DataInfo,
    factory: Callable[[], nn.Module],
    *,
    prior: Prior | None = None,
    likelihood: Likelihood | None = None,
    layers: Any = None,
) -> BNN:
    """The Bayesian net: ``factory()`` with the configured prior on the chosen layers.

    :param prior: the prior object when ``config.prior`` is ``"custom"``.
    :param likelihood: the likelihood object when ``config.likelihood`` is ``"custom"``.
    :param layers: the layer selector; ``config.layers`` (all layers when empty) if omitted.
    :raises ValueError: when a ``"custom"`` part is not given.
    """
    if (config.prior == "custom" and prior is None) or (
        config.likelihood == "custom" and likelihood is None
    ):
        raise ValueError(
            "this model was built with a user's own Prior or Likelihood object, which a "
            "checkpoint cannot name: pass it again (prior=..., likelihood=...)"
        )
    if config.likelihood == "custom":
        lik = likelihood
    elif config.likelihood == "normal":
        lik = Normal(config.noise, learn=config.learn_noise)
    else:
        lik = config.likelihood
    pri = prior if config.prior == "custom" else config.make_prior()
    chosen = layers if layers is not None else (list(config.layers) or None)
    return BNN(factory, pri, info, likelihood=make_likelihood(lik, info), layers=chosen)


def bayesian_layers(model: BNN) -> tuple[str, ...]:
    """Qualified names (within the user's net) of the layers ``model`` made Bayesian."""
    names = {id(m): n for n, m in model.net.named_modules()}
    sites = [*weight_sites(model.net), *unit_sites(model.net)]
    # dict.fromkeys: a recurrent layer holds several weight sites
    return tuple(dict.fromkeys(names[id(site.module)] for site in sites))


def module_spec(
    name: str,
    config: ModuleConfig,
    factory: Callable[[], nn.Module],
    *,
    prior: Prior | None = None,
    likelihood: Likelihood | None = None,
) -> ModelSpec:
    """The (unregistered) entry of a user's net: a model builder over ``factory``, every
    weight guide, and the BNN family's hooks.

    :param prior: the prior object when ``config.prior`` is ``"custom"``.
    :param likelihood: the likelihood object when ``config.likelihood`` is ``"custom"``.
    """

    def build(cfg: ModuleConfig, info: DataInfo) -> BNN:
        return build_model(cfg, info, factory, prior=prior, likelihood=likelihood)

    structured = config.prior == "sbp" or isinstance(prior, SBP)
    default = "meanfield" if config.prior == "normal" else "sparse-vd"
    return ModelSpec(
        name=name,
        family=FAMILY,
        description=f"a user's network ({config.net or 'given as an instance'})",
        config=config,
        build_model=build,
        guides=ALL_GUIDES,
        default_guide="sbp" if structured else default,
        elbo="meanfield",
        dataset="",
        train_defaults=TRAIN_DEFAULTS,
        reference=REFERENCE,
        hooks=dataclasses.replace(
            STRUCTURED_HOOKS if structured else HOOKS,
            train_defaults_for_data=train_defaults_for_data,  # {} but for the log-uniform prior
        ),
    )


def net_factory(
    net: nn.Module | Callable[..., nn.Module] | str, info: DataInfo
) -> tuple[Callable[[], nn.Module], str]:
    """A function building fresh copies of the plain net, and its reference for checkpoints
    (``""`` when it has none).

    :param net: an ``nn.Module`` (copied: the user's module is never changed, and its current
        weights become the guide's initial means), a function (called with ``info`` if it takes
        an argument), or a reference (:func:`load_factory`).
    :raises TypeError: for anything else.
    """
    # partials, not lambdas: the model keeps the factory, and torch.save(zm.model) pickles it
    if isinstance(net, nn.Module):
        return functools.partial(copy.deepcopy, copy.deepcopy(net)), ""
    if isinstance(net, str):
        where, _, name = net.rpartition(":")
        fn = load_factory(net)
        if where.endswith(".py"):
            net = f"{Path(where).expanduser().resolve()}:{name}"
        return functools.partial(build_with, fn, info), net
    if callable(net):
        return functools.partial(build_with, net, info), net_reference(net)
    raise TypeError(f"net must be an nn.Module, a function or a reference, got {net!r}")
