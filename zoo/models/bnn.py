"""Bayesian neural networks: any network, a weight prior, a guide, and pruning by log alpha.

The generative process, for a network ``f`` whose ``Linear``/``ConvNd`` weights ``W`` carry the
prior of :mod:`zoo.priors` and whose biases (and other layers) are point estimates::

    W ~ p(W)                                  Normal(0, s^2) or log-uniform, per weight
    y_i | x_i, W ~ Categorical(softmax f(x_i; W))        classification
    y_i | x_i, W ~ Normal(f(x_i; W), sigma^2)            regression, sigma learned

The guides of :mod:`guides.dropout` supply ``q(W)``; training maximizes
``(N/B) sum_batch E_q log p(y|x,W) - beta KL(q||p)`` with ``TraceMeanField_ELBO`` and the
registered KLs, through the local reparameterization trick (:mod:`zoo.handlers.lrt`) by default.

After training, weights with ``log alpha > 3`` are pruned (Molchanov et al. 2017) and the net is
evaluated with the pruned posterior means; :func:`layer_report` gives the per-layer sparsity
and compression, :func:`export_pruned` the deterministic ``nn.Module``.

Usage::

    from zoo import create_model, fit, load
    data = load("digits")
    zm = create_model("lenet300-loguniform", data=data)      # SparseVD, LRT
    fit(zm, data, num_epochs=50)
    layer_report(zm)                                           # sparsity per layer
    net = export_pruned(zm)                                    # plain nn.Sequential
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from guides.dropout import MCDropout, MeanFieldGaussian, SparseVD, VariationalDropout
from guides.meanfield import DEFAULT_INIT_ALPHA
from zoo.data import DataInfo
from zoo.handlers.lrt import LocalReparameterization
from zoo.likelihoods import ClassLikelihood, Likelihood, make_likelihood
from zoo.models.plots import LazyPlot
from zoo.models.weights import mean_net_outputs, pointwise_log_likelihood, predict, weight_guide
from zoo.plates import check_input, data_plate
from zoo.priors import LogUniform, Normal, Prior, deterministic_layers, layer_type, weight_sites
from zoo.spec import Hooks, ModelSpec, ZooModel
from zoo.util import check_numbers, local_params

__all__ = [
    "ARCHS",
    "BAYESIAN_TOTAL",
    "BNN",
    "DETERMINISTIC_TOTAL",
    "GUIDES",
    "HOOKS",
    "BNNConfig",
    "WeightConfig",
    "build_net",
    "check_outputs",
    "elbo_for",
    "export_pruned",
    "layer_report",
    "metrics",
    "pruned_state_dict",
]

REFERENCE = (
    "Molchanov, Ashukha & Vetrov (2017), Variational dropout sparsifies deep neural networks, "
    "ICML; Kingma, Salimans & Welling (2015), Variational dropout and the local "
    "reparameterization trick, NeurIPS; Blundell et al. (2015), Weight uncertainty in neural "
    "networks, ICML; Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML"
)

#: ``mlp``: ``hidden`` widths with ReLU (``()`` is a linear model, ``(300, 100)`` LeNet-300-100);
#: ``lenet5``: LeNet-5-Caffe, conv 20@5x5, pool, conv 50@5x5, pool, 500, out.
ARCHS = ("mlp", "lenet5")
PRIORS = ("normal", "loguniform")
REPARAMS = ("lrt", "per_example", "shared")


@dataclass(frozen=True)
class WeightConfig:
    """What every Bayesian net needs, whatever its architecture: prior, guide and evaluation.

    :param prior: ``normal`` (``N(0, prior_scale^2)``) or ``loguniform``.
    :param prior_scale: standard deviation of the normal prior.
    :param reparam: ``lrt`` (sample pre-activations), ``per_example`` (a weight sample per
        example) or ``shared`` (one weight sample per minibatch).
    :param threshold: prune weights with ``log alpha`` above it (3: ``p > 0.95``).
    :param init_log_sigma2: initial ``log sigma^2`` of the sparse-VD guide.
    :param init_scale: initial standard deviation of every weight of the mean-field (Bayes by
        Backprop) guide; ``None``: per layer, ``sqrt(init_alpha * mean(mu0^2))`` of its initial
        weights ``mu0`` (:func:`guides.meanfield.relative_init_scale`).
    :param init_alpha: the mean-field guide's initial noise-to-signal ratio per layer.
    :param dropout: MC-dropout rate of hidden layers' inputs.
    :param input_dropout: MC-dropout rate of the first layer's inputs.
    :param init_dropout: initial dropout rate of the variational-dropout guides.
    :param max_dropout: cap on the learned rate of those guides (0.5 is Kingma's alpha <= 1).
    :param eval_samples: posterior samples averaged by the predictive metrics.
    :param eval_batch_size: examples per forward pass in evaluation.
    """

    prior: str = "loguniform"
    prior_scale: float = 1.0
    reparam: str = "lrt"
    threshold: float = 3.0
    init_log_sigma2: float = -10.0
    init_scale: float | None = None
    init_alpha: float = DEFAULT_INIT_ALPHA
    dropout: float = 0.5
    input_dropout: float = 0.2
    init_dropout: float = 0.2
    max_dropout: float = 0.5
    eval_samples: int = 10
    eval_batch_size: int = 2000

    #: the ``prior`` names this configuration accepts
    PRIOR_CHOICES: ClassVar[tuple[str, ...]] = PRIORS

    def __post_init__(self) -> None:
        check_numbers(self)  # finite floats (a nan threshold would prune nothing), whole counts
        for name, value, choices in (
            ("prior", self.prior, self.PRIOR_CHOICES),
            ("reparam", self.reparam, REPARAMS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if self.prior_scale <= 0 or (self.init_scale is not None and self.init_scale <= 0):
            raise ValueError("prior_scale and init_scale must be positive")
        if self.init_alpha <= 0:
            raise ValueError(f"init_alpha must be positive, got {self.init_alpha}")
        if self.eval_samples < 1 or self.eval_batch_size < 1:
            raise ValueError("eval_samples and eval_batch_size must be at least 1")
        # MC dropout may drop nothing; the variational rates are logits, so never 0
        for name, zero in (("dropout", 1), ("input_dropout", 1), ("init_dropout", 0)):
            value = getattr(self, name)
            if not (0 < value < 1 or (zero and value == 0)):
                interval = "[0, 1)" if zero else "(0, 1)"
                raise ValueError(f"{name} must lie in {interval}, got {value}")
        if not 0 < self.max_dropout < 1:
            raise ValueError(f"max_dropout must lie in (0, 1), got {self.max_dropout}")

    def make_prior(self) -> Prior:
        return Normal(self.prior_scale) if self.prior == "normal" else LogUniform()


@dataclass(frozen=True)
class BNNConfig(WeightConfig):
    """Configuration of the BNN family's own architectures (and :class:`WeightConfig`'s fields).

    :param arch: one of :data:`ARCHS`.
    :param hidden: hidden widths of ``mlp``.
    :param init_noise: initial noise standard deviation of the regressor.
    """

    arch: str = "mlp"
    hidden: tuple[int, ...] = (300, 100)
    init_noise: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        if self.init_noise <= 0:
            raise ValueError(f"init_noise must be positive, got {self.init_noise}")


def build_net(config: BNNConfig, info: DataInfo) -> nn.Module:
    """The plain (deterministic) architecture for inputs ``info``; it maps ``x`` to logits/means.

    :raises ValueError: when ``lenet5`` gets inputs that are not images of at least 16x16.
    """
    out = info.num_classes if info.task == "classification" else 1
    if config.arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = info.input_dim
        for h in config.hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        return nn.Sequential(*layers, nn.Linear(width, out))
    if len(info.input_shape) != 3 or min(info.input_shape[1:]) < 16:
        raise ValueError(
            f"lenet5 needs image inputs (C, H, W) of at least 16x16, got {info.input_shape}; "
            "use arch='mlp' for small inputs such as digits"
        )
    channels, height, width = info.input_shape
    features = nn.Sequential(
        nn.Conv2d(channels, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = features(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(*features, nn.Linear(flat, 500), nn.ReLU(), nn.Linear(500, out))


class BNN(PyroModule):
    """A Bayesian network: ``net_factory()``'s architecture with ``prior`` on its weights.

    :param net_factory: builds the plain network (called again by :func:`export_pruned`).
    :param prior: a :class:`zoo.priors.Prior`.
    :param info: the data's shapes and task (classification or regression).
    :param likelihood: a :class:`zoo.likelihoods.Likelihood`; the data's default (Categorical,
        or Normal with learned noise) when omitted.
    :param layers: which layers become Bayesian, as :meth:`zoo.priors.Prior.apply_` takes it.
    :raises ValueError: when the net's outputs do not have the shape the likelihood needs.
    """

    def __init__(
        self,
        net_factory: Callable[[], nn.Module],
        prior: Prior,
        info: DataInfo,
        *,
        likelihood: Likelihood | None = None,
        layers: Any = None,
    ) -> None:
        super().__init__()
        if info.task not in ("classification", "regression"):
            raise ValueError(f"a BNN needs a classification or regression task, got {info.task!r}")
        self.info = info
        self._net_factory = net_factory
        self.likelihood = make_likelihood(likelihood, info)
        net = net_factory()
        check_outputs(net, info, self.likelihood.out_features(info))
        self.net = prior.apply_(net) if layers is None else prior.apply_(net, layers=layers)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        check_input(x, self.info.input_shape, "bnn")
        out = self.net(x)
        with data_plate(x, num_data):
            self.likelihood(out, y)
        return out

    def plain_net(self) -> nn.Module:
        """A fresh, untrained instance of the deterministic architecture."""
        return self._net_factory()


@torch.no_grad()
def check_outputs(net: nn.Module, info: DataInfo, features: int) -> None:
    """Refuse a net whose outputs for inputs ``info.input_shape`` are not ``(N, features)``.

    The net runs once in eval mode on two zero inputs (BatchNorm needs more than one).

    :raises ValueError: naming the shapes, or the error the net raised on such inputs.
    """
    was_training = net.training
    net.eval()
    try:
        out = net(torch.zeros(2, *info.input_shape))
    except Exception as exc:
        raise ValueError(
            f"{type(net).__name__} failed on inputs of shape {('N', *info.input_shape)}, the "
            f"data's: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, features):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{type(net).__name__} gives outputs of shape {shape} for 2 examples; the likelihood "
            f"needs (N, {features}) (the task is {info.task} with {info.num_classes} classes)"
        )


@local_params()
def pruned_state_dict(zm: ZooModel, threshold: float | None = None) -> dict[str, torch.Tensor]:
    """The state dict of :meth:`BNN.plain_net` holding the pruned posterior means.

    :param threshold: the ``log alpha`` pruning threshold; the config's when omitted.
    """
    threshold = zm.config.threshold if threshold is None else threshold
    state = {k: v.detach().clone() for k, v in zm.model.net.state_dict().items()}
    prefix = "net."
    for site, w in weight_guide(zm).mean_weights(threshold).items():
        state[site.removeprefix(prefix)] = w.detach().clone()
    return state


@local_params()
def export_pruned(zm: ZooModel, threshold: float | None = None) -> nn.Module:
    """The deterministic network with the pruned posterior means, a plain ``nn.Module``."""
    net = zm.model.plain_net().to(zm.device)
    net.load_state_dict(pruned_state_dict(zm, threshold))
    return net.eval()


def _classification_metrics(logp: torch.Tensor, y: torch.Tensor, prefix: str) -> dict:
    return {
        f"{prefix}acc": (logp.argmax(-1) == y).float().mean().item(),
        f"{prefix}nll": -logp.gather(-1, y.long()[:, None]).mean().item(),
    }


@local_params()
def metrics(zm: ZooModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy/NLL (or RMSE/NLL) of the pruned mean net and of the MC predictive, sparsity.

    ``acc``/``nll``: the deterministic net of pruned posterior means (for MC dropout the
    weight-scaling rule).  ``mc_acc``/``mc_nll``: the predictive averaged over
    ``config.eval_samples`` posterior draws.  ``sparsity``: the pruned fraction of the Bayesian
    weights (deterministic layers are not counted, see :func:`layer_report`);
    ``compression``: ``|W| / |W != 0|``.
    """
    out: dict[str, float] = {}
    mean_out = mean_net_outputs(zm, x)
    draws = predict(zm, x)
    lik = zm.model.likelihood
    if isinstance(lik, ClassLikelihood):
        out.update(_classification_metrics(lik.class_log_probs(mean_out), y, ""))
        probs = lik.class_log_probs(draws).exp().mean(0)
        out.update(_classification_metrics(probs.clamp_min(1e-12).log(), y, "mc_"))
    else:
        sigma = lik.noise
        mean_out, draws = mean_out.squeeze(-1), draws.squeeze(-1)
        out["rmse"] = (mean_out - y).square().mean().sqrt().item()
        out["nll"] = -dist.Normal(mean_out, sigma).log_prob(y).mean().item()
        out["mc_rmse"] = (draws.mean(0) - y).square().mean().sqrt().item()
        lp = dist.Normal(draws, sigma).log_prob(y).logsumexp(0) - math.log(draws.shape[0])
        out["mc_nll"] = -lp.mean().item()
    report = zm.spec.hooks.report(zm)  # the family's report: per weight, or per unit (SBP)
    total = report.iloc[-1]
    out["sparsity"] = float(total["sparsity_%"]) / 100
    out["compression"] = float(total["compression"])
    return out


#: The label of the report's last row: the Bayesian weights' totals, the ones compression counts.
BAYESIAN_TOTAL = "total (Bayesian weights)"
#: The label of the row that sums the parameters of the layers left deterministic.
DETERMINISTIC_TOTAL = "total (deterministic, not counted)"


def _row(
    layer: str, kind: str, type_: str, shape: str, weights: int, kept: int, rate: float = math.nan
) -> dict:
    # Sparsity and compression for Bayesian rows; NaN (not pruned) for deterministic ones.
    pruned = kind != "deterministic"
    return {
        "layer": layer,
        "kind": kind,
        "type": type_,
        "shape": shape,
        "weights": weights,
        "kept": kept,
        "sparsity_%": 100.0 * (1 - kept / weights) if pruned else math.nan,
        "compression": (weights / kept if kept else math.inf) if pruned else math.nan,
        "dropout_rate": rate,
    }


def _deterministic_rows(zm: ZooModel) -> list[dict]:
    """One row per layer of ``zm``'s network left deterministic, and their sum."""
    inside = {id(m) for m in zm.model.net.modules()}  # not the model's own (a regressor's noise)
    rows = []
    for name, module in deterministic_layers(zm.model):
        if id(module) in inside:
            count = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(_row(name, "deterministic", layer_type(module), "", count, count))
    if rows:
        count = sum(r["weights"] for r in rows)
        rows.append(_row(DETERMINISTIC_TOTAL, "deterministic", "", "", count, count))
    return rows


@local_params()
@torch.no_grad()
def layer_report(zm: ZooModel, threshold: float | None = None) -> pd.DataFrame:
    """Per layer: weights, kept weights, sparsity %, compression ``|W|/|W≠0|``, dropout rate.

    One row per Bayesian weight (``kind`` ``linear``, ``conv1d``, ``conv2d`` or ``conv3d``),
    then one per layer the prior left deterministic (``kind`` ``deterministic``, see
    :func:`zoo.priors.deterministic_layers`: its parameter count, none pruned, no sparsity or
    compression) and their sum, :data:`DETERMINISTIC_TOTAL`.  The last row,
    :data:`BAYESIAN_TOTAL`, totals the Bayesian weights only: its sparsity and compression are
    the ones :func:`metrics` reports, and they count neither the deterministic layers nor the
    biases of the Bayesian ones (point estimates too).

    ``dropout_rate`` is the mean of ``p = alpha / (1 + alpha)`` over the layer's weights (for a
    per-layer alpha, the layer's rate); empty for the mean-field guide.  A layer with every
    weight pruned has infinite compression.

    Usage::

        layer_report(zm)      # a DataFrame; zoo train prints it and writes report.csv
    """
    threshold = zm.config.threshold if threshold is None else threshold
    guide = weight_guide(zm)
    rates = None if isinstance(guide, MeanFieldGaussian) else guide.dropout_rates()
    sites = {site.name: site for site in weight_sites(zm.model)}
    rows = []
    for name, mask in guide.masks(threshold).items():
        site = sites[name]
        shape = "x".join(map(str, mask.shape))
        rate = math.nan if rates is None else rates[name].mean().item()
        kept = int(mask.sum())
        rows.append(_row(name, site.kind, layer_type(site.module), shape, mask.numel(), kept, rate))
    weights, kept = sum(r["weights"] for r in rows), sum(r["kept"] for r in rows)
    total = _row(BAYESIAN_TOTAL, "", "", "", weights, kept)
    return pd.DataFrame([*rows, *_deterministic_rows(zm), total])


# --------------------------------------------------------------------------------------------
# Registry entries: architecture x prior, each with the guides that suit that prior.


def _build(config: BNNConfig, info: DataInfo) -> BNN:
    # the regressor's noise starts at the config's; BNN checks the task and picks the rest
    regress = info.task == "regression"
    likelihood = make_likelihood("normal", info, noise=config.init_noise) if regress else None
    net = functools.partial(build_net, config, info)  # not a lambda: the model pickles
    return BNN(net, config.make_prior(), info, likelihood=likelihood)


_NORMAL_GUIDES = {
    "meanfield": lambda c, info, m: MeanFieldGaussian(
        m, init_scale=c.init_scale, init_alpha=c.init_alpha
    ),
    "mc-dropout": lambda c, info, m: MCDropout(m, p=c.dropout, p_first=c.input_dropout),
}
_LOGUNIFORM_GUIDES = {
    "sparse-vd": lambda c, info, m: SparseVD(m, init_log_sigma2=c.init_log_sigma2),
    "vd-layer": lambda c, info, m: VariationalDropout(
        m, per="layer", init_dropout=c.init_dropout, max_dropout=c.max_dropout
    ),
    "vd-unit": lambda c, info, m: VariationalDropout(
        m, per="unit", init_dropout=c.init_dropout, max_dropout=c.max_dropout
    ),
}

#: Molchanov et al.'s recipe: Adam, batch 100, 200 epochs, KL weight 0 for epochs 0-4 then
#: linear to 1 at epoch 20.  LeNet-300-100 decays lr linearly over the second half, LeNet-5
#: over all of training.
_RECIPE = {
    "num_epochs": 200,
    "batch_size": 100,
    "lr": 1e-3,
    "lr_schedule": "linear",
    "kl_warmup_start": 5,
    "kl_warmup_end": 20,
}


def _handler(config: BNNConfig) -> LocalReparameterization | None:
    # The layers sample pre-activations and the KLs are closed-form: no weight is ever read, so
    # none is drawn (zoo.handlers.lrt, draw_weights).
    if config.reparam == "shared":
        return None
    return LocalReparameterization(config.reparam, draw_weights=False)


def elbo_for(config: BNNConfig, train: Any = None) -> str:
    """``meanfield`` unless the weights are shared draws: with the local reparameterization no
    weight is drawn, and only the closed-form KLs of ``meanfield`` do without one.

    :raises ValueError: for another ELBO asked for by ``train.elbo`` when ``reparam`` is ``lrt``
        or ``per_example``.
    """
    requested = None if train is None else train.elbo
    if requested in (None, "meanfield") or config.reparam == "shared":
        return requested or "meanfield"
    raise ValueError(
        f"reparam={config.reparam!r} trains with elbo 'meanfield' (closed-form KLs; the local "
        f"reparameterization draws no weights), got {requested!r}; use reparam='shared' for it"
    )


#: The BNN family's behaviour (pruning report, export, pointwise log-likelihoods, the LRT),
#: shared by every net made Bayesian here, the registry's and a user's (``zoo.from_module``).
HOOKS = Hooks(
    handler=_handler,
    elbo_for=elbo_for,
    metrics=metrics,
    plot=LazyPlot("zoo.models.plots.bnn"),
    report=layer_report,
    export=pruned_state_dict,
    log_likelihood=pointwise_log_likelihood,
)

#: Every weight guide by name; the registry's entries offer those that suit their prior.
GUIDES = {**_LOGUNIFORM_GUIDES, **_NORMAL_GUIDES}


def _spec(name: str, description: str, config: BNNConfig, dataset: str, train: dict) -> ModelSpec:
    guides = _NORMAL_GUIDES if config.prior == "normal" else _LOGUNIFORM_GUIDES
    return ModelSpec(
        name=name,
        family="bnn",
        description=description,
        config=config,
        build_model=_build,
        guides=guides,
        default_guide=next(iter(guides)),
        elbo="meanfield",
        dataset=dataset,
        train_defaults=train,
        reference=REFERENCE,
        hooks=HOOKS,
    )


def _prior_specs(prior: str) -> tuple[ModelSpec, ...]:
    what = "Gaussian prior" if prior == "normal" else "log-uniform prior (sparse VD)"
    return (
        _spec(
            f"lenet300-{prior}",
            f"LeNet-300-100 classifier, {what}",
            BNNConfig(hidden=(300, 100), prior=prior),
            "fashion-mnist",
            {**_RECIPE, "lr_decay_start": 0.5},
        ),
        _spec(
            f"lenet5-{prior}",
            f"LeNet-5-Caffe conv classifier, {what}",
            BNNConfig(arch="lenet5", prior=prior),
            "fashion-mnist",
            {**_RECIPE, "lr_decay_start": 0.0},
        ),
        _spec(
            f"mlp-regressor-{prior}",
            f"MLP regressor (50 hidden), Gaussian likelihood with learned noise, {what}",
            BNNConfig(hidden=(50,), prior=prior),
            "regression-synthetic",
            {"num_epochs": 200, "batch_size": 100, "lr": 1e-2, "kl_warmup_end": 20},
        ),
    )


#: The family's registry entries, collected by :mod:`zoo.registry`.
SPECS = (
    _spec(
        "logreg",
        "Bayesian logistic regression, Gaussian prior, mean-field guide",
        BNNConfig(hidden=(), prior="normal"),
        "digits",
        {"num_epochs": 100, "batch_size": 128, "lr": 1e-2},
    ),
    *(spec for prior in PRIORS for spec in _prior_specs(prior)),
)
