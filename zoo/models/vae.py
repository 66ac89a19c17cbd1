"""Variational autoencoders (Kingma & Welling 2014; Rezende, Mohamed & Wierstra 2014).

The generative process, for each example ``n``::

    z_n ~ N(0, I_k)
    x_n ~ p_theta(x | z_n)        # Bernoulli, Gaussian or continuous Bernoulli, per pixel

with an MLP or a transposed-convolution decoder, and the amortized guide
``q_phi(z | x) = N(m_phi(x), diag s_phi(x)^2)`` of :class:`guides.amortized.AmortizedNormal`.
``z`` is one sample site of shape ``(B, k)`` in the data plate, so the ELBO's likelihood term
scales by ``N / B`` (:func:`zoo.plates.data_plate`).

* **Likelihoods.**  ``bernoulli`` models binarized images: in training each minibatch is
  binarized afresh at every step (dynamic binarization, Burda et al. 2016), while the test split
  is binarized once, by a seeded draw that does not depend on the device, so test numbers are
  comparable across runs.  ``gaussian`` has a learned per-pixel scale with a floor, and
  ``continuous-bernoulli`` the normalized density on [0, 1] of Loaiza-Ganem & Cunningham (2019).
* **Gradient estimators** (``estimator``): ``reparam`` trains with ``Trace_ELBO``; ``score``,
  ``score-avg`` and ``score-nn`` switch the guide's reparameterization off and train with
  ``TraceGraph_ELBO``, without a baseline, with a decaying-average baseline or with a neural one.
* **Evaluation.**  :func:`elbo_per_example` is the test ELBO; :func:`iwae_log_likelihood` the
  importance-weighted bound of Burda et al. (2016), which tightens towards ``log p(x)`` as ``k``
  grows, computed in batches of examples and chunks of ``k`` with a running ``logsumexp``.

Usage::

    from zoo import create_model, fit, load
    from zoo.models.vae import iwae_log_likelihood, binarize_fixed
    data = load("digits")
    zm = create_model("vae-digits", data=data, estimator="reparam")
    fit(zm, data, num_epochs=50)
    x = binarize_fixed(data.x_test, seed=0)
    iwae_log_likelihood(*zm.callables(), x, num_samples=5000).mean()   # nats per example
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from pyro.poutine.util import site_is_subsample
from torch import nn

from guides.amortized import (
    AmortizedNormal,
    activation,
    conv_sizes,
    estimator_problems,
    mlp,
    refuse_vectorized_neural_baseline,
    resize_average_baseline,
)
from zoo.data import DataInfo
from zoo.elbo import make_elbo
from zoo.models.plots import LazyPlot
from zoo.plates import check_input, data_plate
from zoo.spec import Hooks, ModelSpec, ZooModel, resolve_elbo
from zoo.util import check_numbers

REFERENCE = (
    "Kingma & Welling (2014), Auto-encoding variational Bayes, ICLR; Burda, Grosse & "
    "Salakhutdinov (2016), Importance weighted autoencoders, ICLR"
)

#: Observation models of :class:`VAE`.
LIKELIHOODS = ("bernoulli", "gaussian", "continuous-bernoulli")

# Likelihoods whose data must lie in [0, 1].
_UNIT_INTERVAL = ("bernoulli", "continuous-bernoulli")


@dataclass(frozen=True)
class VAEConfig:
    """Configuration of the VAE family.

    :param latent_dim: ``k``, the size of ``z``.
    :param arch: ``mlp``, or ``conv`` (strided convolutions in the encoder, transposed ones in
        the decoder; needs image inputs).
    :param hidden: hidden widths of the encoder's MLP; the decoder mirrors them.
    :param channels: channels of the stride-2 convolutions of ``arch=conv``.
    :param activation: ``relu``, ``tanh``, ``elu`` or ``softplus``.
    :param likelihood: ``bernoulli`` (binarized images), ``gaussian`` or ``continuous-bernoulli``.
    :param min_scale: floor of the Gaussian likelihood's learned per-pixel scale.
    :param estimator: the encoder's gradient estimator: ``reparam``, ``score`` (no baseline),
        ``score-avg`` (decaying-average baseline) or ``score-nn`` (neural baseline).
    :param baseline_beta: decay of the ``score-avg`` moving average.
    :param baseline_hidden: hidden widths of the ``score-nn`` baseline network.
    :param encoder_min_scale: floor of the encoder's posterior standard deviation; it keeps
        ``log q`` finite.  The score of the posterior mean, ``eps / s``, grows as ``1 / s``, so a
        floor also bounds the score-function gradient; a ``1e-2`` floor did not stop its training
        from diverging at a learning rate of ``1e-3`` (``benchmarks/results/vae-stability``).
    :param binarize_seed: seed of the fixed binarization of evaluation data.
    :param eval_samples: samples per example of the test ELBO.
    :param eval_k: importance samples per example of the IWAE bound computed at every
        evaluation (Burda et al. use 5000 for their final numbers; that is slow on a CPU).
    """

    latent_dim: int = 10
    arch: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (200,)
    channels: tuple[int, ...] = (32, 64)
    activation: str = "relu"
    likelihood: Literal["bernoulli", "gaussian", "continuous-bernoulli"] = "bernoulli"
    min_scale: float = 0.01
    estimator: Literal["reparam", "score", "score-avg", "score-nn"] = "reparam"
    baseline_beta: float = 0.9
    baseline_hidden: tuple[int, ...] = (100,)
    encoder_min_scale: float = 1e-4
    binarize_seed: int = 0
    eval_samples: int = 10
    eval_k: int = 64

    def __post_init__(self) -> None:
        check_numbers(self)
        problems = []
        if self.latent_dim < 1:
            problems.append(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.arch not in ("mlp", "conv"):
            problems.append(f"arch must be mlp or conv, got {self.arch!r}")
        if any(w < 1 for w in (*self.hidden, *self.channels, *self.baseline_hidden)):
            problems.append("hidden, channels and baseline_hidden must be positive")
        if self.arch == "conv" and not self.channels:
            problems.append("arch='conv' needs at least one channel width")
        if self.likelihood not in LIKELIHOODS:
            problems.append(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        problems += estimator_problems(self.estimator, self.baseline_beta)
        if not self.min_scale > 0:
            problems.append(f"min_scale must be positive, got {self.min_scale}")
        if not self.encoder_min_scale > 0:
            problems.append(f"encoder_min_scale must be positive, got {self.encoder_min_scale}")
        if self.eval_samples < 1 or self.eval_k < 1:
            problems.append("eval_samples and eval_k must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        activation(self.activation)  # raises for an unknown name


class _ConvDecoder(nn.Module):
    """``z -> MLP -> (C, h, w) -> transposed convolutions -> (1, H, W)``, the encoder mirrored.

    Leading dimensions of ``z`` (importance samples, vectorized particles) are folded into the
    batch for the convolutions and restored on the flat output.
    """

    def __init__(
        self,
        latent_dim: int,
        input_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        hidden: tuple[int, ...],
        act: str,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.sizes = conv_sizes((h, w), len(channels))
        self.top = channels[-1]
        width = self.top * math.prod(self.sizes[-1])
        self.fc = mlp([latent_dim, *hidden, width], act, final_activation=True)
        widths = [*reversed(channels), c]
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in itertools.pairwise(widths)
        )
        self.act = activation(act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, self.top, *self.sizes[-1])
        for i, deconv in enumerate(self.deconvs):
            # output_size resolves the odd sizes stride 2 leaves ambiguous (7 -> 3 -> 7)
            h = deconv(h, output_size=self.sizes[-2 - i])
            if i < len(self.deconvs) - 1:
                h = self.act(h)
        return h.reshape(*lead, -1)


class VAE(PyroModule):
    """The VAE's generative model ``p(z) p_theta(x | z)``.

    :param input_shape: shape of one example; flattened to ``d`` pixels for the likelihood.
    :param latent_dim: ``k``.
    :param hidden: hidden widths of the decoder's MLP, from ``z`` outwards.
    :param act: activation name.
    :param likelihood: one of :data:`LIKELIHOODS`.
    :param channels: transposed-convolution channels, from the image inwards (empty: MLP).
    :param min_scale: floor of the Gaussian scale.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        latent_dim: int,
        hidden: tuple[int, ...] = (200,),
        act: str = "relu",
        likelihood: str = "bernoulli",
        *,
        channels: tuple[int, ...] = (),
        min_scale: float = 0.01,
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.input_shape = tuple(input_shape)
        self.input_dim = math.prod(self.input_shape)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        if channels:
            if len(self.input_shape) != 3:
                raise ValueError(
                    f"a conv VAE needs (C, H, W) images, got examples of shape {self.input_shape}"
                )
            self.decoder = _ConvDecoder(
                self.latent_dim, self.input_shape, tuple(channels), tuple(hidden), act
            )
        else:
            self.decoder = mlp([self.latent_dim, *hidden, self.input_dim], act)
        if likelihood == "gaussian":
            self.scale = PyroParam(
                torch.full((self.input_dim,), 0.5), constraint=constraints.greater_than(min_scale)
            )

    def observation(self, z: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z)`` with one event of ``d`` pixels and batch shape ``z.shape[:-1]``."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        if self.likelihood == "continuous-bernoulli":
            return dist.ContinuousBernoulli(logits=out).to_event(1)
        return dist.Normal(out, self.scale).to_event(1)

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """``p(z) = N(0, I_k)`` on ``like``'s device and dtype."""
        return dist.Normal(like.new_zeros(()), 1.0).expand([self.latent_dim]).to_event(1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]``, flat, shape ``(..., d)``."""
        return self.observation(z).mean

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        check_input(x, self.input_shape, type(self).__name__)
        flat = x.reshape(x.shape[0], self.input_dim)
        with data_plate(x, num_data):
            z = pyro.sample("z", self.prior(flat))
            return pyro.sample("x", self.observation(z), obs=flat)


# ---------------------------------------------------------------------------------------------
# binarization and input checks


def check_unit_interval(x: torch.Tensor, likelihood: str) -> None:
    """Raise a clear ``ValueError`` when ``likelihood`` needs data in [0, 1] and ``x`` is not."""
    if likelihood in _UNIT_INTERVAL and x.numel():
        # one device sync for both ends: this runs on every training step
        low, high = torch.stack(torch.aminmax(x)).tolist()
        if low < 0 or high > 1:
            raise ValueError(
                f"the {likelihood} likelihood needs pixel intensities in [0, 1], got values in "
                f"[{low:.4g}, {high:.4g}]; rescale the data or use likelihood='gaussian'"
            )


def binarize_dynamic(x: torch.Tensor) -> torch.Tensor:
    """A fresh draw ``x_bin ~ Bernoulli(x)`` from the global RNG, on ``x``'s device."""
    check_unit_interval(x, "bernoulli")
    return torch.bernoulli(x)


def binarize_fixed(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``x_bin ~ Bernoulli(x)`` drawn from a CPU generator seeded with ``seed``: the same binary
    images on every device and at every call (the static test binarization)."""
    check_unit_interval(x, "bernoulli")
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(x.shape, generator=gen, dtype=torch.float32).to(x.device)
    return (u < x).to(x.dtype)


def prepare_eval_data(zm: ZooModel, x: torch.Tensor) -> torch.Tensor:
    """Evaluation data as the likelihood sees it: checked, and binarized by the fixed seed for
    the Bernoulli likelihood."""
    check_unit_interval(x, zm.config.likelihood)
    if zm.config.likelihood == "bernoulli":
        return binarize_fixed(x, zm.config.binarize_seed)
    return x


def _batch_transform(
    zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if zm.config.estimator in ("score-avg", "score-nn"):
        resize_average_baseline(x.shape[0], zm.guide.site)
    if zm.config.likelihood == "bernoulli":
        return binarize_dynamic(x), y  # which checks [0, 1] itself
    check_unit_interval(x, zm.config.likelihood)
    return x, y


# ---------------------------------------------------------------------------------------------
# importance weights, the test ELBO and the IWAE bound

#: Float elements of one chunk's decoder output (64 MiB in float32).
MAX_CHUNK_ELEMENTS = 2**24


def log_weights(
    model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """``log p(x_i, z_is) - log q(z_is | x_i)`` for ``z_is ~ q(z | x_i)``, shape ``(S, B)``.

    Generic over models whose latent and observed sites all sit in the data plate (dim -1): the
    guide runs once inside an outer plate of ``S`` samples (dim -2), the model is replayed on
    its draws, and Pyro scores every site.
    """
    with torch.no_grad(), pyro.plate("importance_samples", num_samples, dim=-2):
        guide_tr = poutine.trace(guide).get_trace(x)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x)
    shape = (num_samples, x.shape[0])
    total = x.new_zeros(shape)
    for trace, sign in ((model_tr, 1.0), (guide_tr, -1.0)):
        trace.compute_log_prob()
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["log_prob"].shape != shape:
                raise ValueError(
                    f"site {name!r} has log-density shape {tuple(site['log_prob'].shape)}, "
                    f"expected {shape}: every site must be one event per example"
                )
            total = total + sign * site["log_prob"]
    return total


def _chunked_log_weights(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    num_samples: int,
    batch_size: int,
) -> Iterator[Iterator[torch.Tensor]]:
    """For each batch of ``batch_size`` examples, its log-weights in chunks of samples small
    enough that a chunk's decoder output stays under :data:`MAX_CHUNK_ELEMENTS` floats."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"need num_samples >= 1 and batch_size >= 1, got {num_samples}, {batch_size}"
        )
    for xb in x.split(batch_size):
        size = max(1, min(num_samples, MAX_CHUNK_ELEMENTS // max(1, xb.numel())))
        sizes = [size] * (num_samples // size) + [num_samples % size] * bool(num_samples % size)
        yield (log_weights(model, guide, xb, s) for s in sizes)


def iwae_log_likelihood(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 500,
) -> torch.Tensor:
    """The importance-weighted bound ``log (1/k) sum_s p(x, z_s) / q(z_s | x)`` per example
    (Burda, Grosse & Salakhutdinov 2016, eq. 8), shape ``(N,)``, on ``x``'s device.

    It lower-bounds ``log p(x)`` in expectation and increases to it as ``k = num_samples`` grows;
    ``k = 1`` is the ELBO.  Examples go in batches of ``batch_size`` and the ``k`` samples in
    chunks that keep each decoder output under :data:`MAX_CHUNK_ELEMENTS` floats; the chunks'
    ``logsumexp`` accumulate with ``logaddexp``, so no ``(k, N)`` tensor is ever held.

    :raises ValueError: for ``num_samples`` or ``batch_size`` below 1.
    """
    out = [
        functools.reduce(torch.logaddexp, (c.logsumexp(0) for c in chunks))
        for chunks in _chunked_log_weights(model, guide, x, num_samples, batch_size)
    ]
    return torch.cat(out) - math.log(num_samples)


def elbo_per_example(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    num_samples: int = 1,
    batch_size: int = 500,
) -> torch.Tensor:
    """The Monte-Carlo ELBO ``(1/S) sum_s log p(x, z_s) / q(z_s | x)`` per example, ``(N,)``
    (Kingma & Welling 2014, eq. 6 without the minibatch scale)."""
    out = [
        sum(c.sum(0) for c in chunks)
        for chunks in _chunked_log_weights(model, guide, x, num_samples, batch_size)
    ]
    return torch.cat(out) / num_samples


# ---------------------------------------------------------------------------------------------
# gradient estimates of the encoder


def encoder_parameters(guide: nn.Module) -> list[nn.Parameter]:
    """The encoder's parameters ``phi``: the guide's, without a neural baseline's."""
    baseline = getattr(guide, "baseline", None)
    skip = set() if baseline is None else {id(p) for p in baseline.parameters()}
    return [p for p in guide.parameters() if id(p) not in skip]


def encoder_gradients(
    zm: ZooModel,
    x: torch.Tensor,
    num_draws: int,
    *,
    num_data: int | None = None,
    num_particles: int = 1,
) -> torch.Tensor:
    """``num_draws`` independent estimates of ``d ELBO / d phi`` on the fixed batch ``x``, each
    from one ``loss_and_grads`` call of the estimator's ELBO, shape ``(num_draws, |phi|)``.

    The gradient of the loss is negated, so the rows estimate the ELBO's gradient.  Parameters
    are not changed, but a ``score-avg`` baseline's moving average advances at every draw, as it
    does in training.
    """
    elbo = make_elbo(
        resolve_elbo(zm),
        num_particles=num_particles,
        max_plate_nesting=zm.spec.max_plate_nesting,
    )
    model, guide = zm.callables()
    params = encoder_parameters(zm.guide)
    all_params = list(zm.parameters())
    draws = []
    for _ in range(num_draws):
        for p in all_params:
            p.grad = None
        elbo.loss_and_grads(model, guide, x, None, num_data=num_data)
        draws.append(torch.cat([-p.grad.reshape(-1) for p in params]))
    for p in all_params:
        p.grad = None
    return torch.stack(draws)


# ---------------------------------------------------------------------------------------------
# registry glue


def _build(config: VAEConfig, info: DataInfo) -> VAE:
    channels = config.channels if config.arch == "conv" else ()
    return VAE(
        info.input_shape,
        config.latent_dim,
        tuple(reversed(config.hidden)),
        config.activation,
        config.likelihood,
        channels=channels,
        min_scale=config.min_scale,
    )


def _encoder(config: VAEConfig, info: DataInfo, model: VAE) -> AmortizedNormal:
    conv = config.arch == "conv"
    return AmortizedNormal(
        model.input_dim,
        config.latent_dim,
        hidden=config.hidden,
        activation=config.activation,
        channels=config.channels if conv else (),
        input_shape=info.input_shape if conv else None,
        estimator=config.estimator,
        baseline_beta=config.baseline_beta,
        baseline_hidden=config.baseline_hidden,
        min_scale=config.encoder_min_scale,
    )


#: ELBOs each estimator may train with; the first is the default.
ELBOS_FOR_ESTIMATOR = {
    "reparam": ("trace", "meanfield", "tracegraph"),
    "score": ("tracegraph", "trace"),
    "score-avg": ("tracegraph",),
    "score-nn": ("tracegraph",),
}


def elbo_for(config: VAEConfig, train: Any = None) -> str:
    """The ELBO for ``config.estimator``, or the one ``train.elbo`` asks for if it fits.

    :raises ValueError: for an ELBO that would ignore the estimator's baseline (only
        ``TraceGraph_ELBO`` reads baselines), or a neural baseline with vectorized particles
        (its output has no particle dimension, which Pyro's shape check refuses).
    """
    allowed = ELBOS_FOR_ESTIMATOR[config.estimator]
    requested = None if train is None else train.elbo
    if requested is not None and requested not in allowed:
        raise ValueError(
            f"estimator {config.estimator!r} trains with elbo {' or '.join(allowed)}, got "
            f"{requested!r}"
            + (" (only TraceGraph_ELBO uses baselines)" if "-" in config.estimator else "")
        )
    refuse_vectorized_neural_baseline(config.estimator, train)
    return requested or allowed[0]


def metrics(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
    """Per-example test ELBO (``eval_samples`` samples), IWAE bound (``eval_k`` samples), and
    the analytic ``KL(q(z|x) || p(z))`` and reconstruction term ``elbo + kl``, in nats."""
    cfg: VAEConfig = zm.config
    x = prepare_eval_data(zm, x)
    model, guide = zm.callables()
    elbo = elbo_per_example(model, guide, x, cfg.eval_samples).mean().item()
    iwae = iwae_log_likelihood(model, guide, x, cfg.eval_k).mean().item()
    kl = torch.cat(
        [
            torch.distributions.kl_divergence(
                dist.Normal(*zm.guide.encode(xb)), dist.Normal(0.0, 1.0)
            ).sum(-1)
            for xb in x.split(500)
        ]
    )
    kl_mean = kl.mean().item()
    return {"elbo": elbo, "iwae": iwae, "kl": kl_mean, "recon": elbo + kl_mean}


#: Adam's learning rate for the score-function estimators (``reparam`` keeps ``1e-3``).
SCORE_FUNCTION_LR = 3e-4


def train_defaults_for(config: VAEConfig) -> dict[str, float]:
    """The learning rate per estimator: ``1e-3`` reparameterized, :data:`SCORE_FUNCTION_LR` for
    the score function.

    Why: on Fashion-MNIST (``vae-fashion``, latent 50, decaying-average baseline) every
    score-function run at ``1e-3`` diverged within 4000 steps: the KL term grew to thousands of
    nats and the encoder's gradient norm from about ``1e8`` to between ``2e12`` and ``6e15``,
    with an encoder scale floor of ``1e-4`` or ``1e-2`` alike (4 runs of 4).  At ``3e-4`` none
    did (4 of 4, KL at most 83 nats).  Clipping the global gradient norm at ``1e8`` (about its
    healthy size) at ``1e-3`` held the KL below 300 nats, but both runs still crossed 100 and
    ended worse than at ``3e-4``.  Without a baseline the score function diverged at ``3e-4``
    too (``benchmarks/results/vae``).  The grids are ``python -m benchmarks.vae_stability``
    (``benchmarks/results/vae-stability`` and ``vae-stability-clip``).
    """
    return {"lr": 1e-3 if config.estimator == "reparam" else SCORE_FUNCTION_LR}


_FAMILY = {
    "family": "vae",
    "build_model": _build,
    "guides": {"encoder": _encoder},
    "default_guide": "encoder",
    "elbo": "trace",
    "reference": REFERENCE,
    "observes": "x",
    "hooks": Hooks(
        metrics=metrics,
        plot=LazyPlot("zoo.models.plots.vae"),
        batch_transform=_batch_transform,
        elbo_for=elbo_for,
        train_defaults_for=train_defaults_for,
    ),
}

#: name -> (description, config, default dataset, epochs): the family's registry entries.
_ENTRIES = {
    "vae-digits": (
        "VAE, MLP 64-200-10, Bernoulli on binarized digits; estimator selectable",
        VAEConfig(latent_dim=10, hidden=(200,)),
        "digits",
        100,
    ),
    "vae-fashion": (
        "VAE, MLP 784-400-50 as Pyro's tutorial, Bernoulli on binarized images",
        VAEConfig(latent_dim=50, hidden=(400,)),
        "fashion-mnist",
        50,
    ),
    "vae-conv-fashion": (
        "VAE, conv encoder 32-64 and transposed-conv decoder, latent 16, Bernoulli",
        VAEConfig(latent_dim=16, arch="conv", hidden=(256,), channels=(32, 64)),
        "fashion-mnist",
        30,
    ),
}

#: The family's registry entries, collected by :mod:`zoo.registry`.
SPECS = tuple(
    ModelSpec(
        name=_name,
        description=_description,
        config=_config,
        dataset=_dataset,
        train_defaults={"num_epochs": _epochs, "batch_size": 100, "lr": 1e-3},
        **_FAMILY,
    )
    for _name, (_description, _config, _dataset, _epochs) in _ENTRIES.items()
)
