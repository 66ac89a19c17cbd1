"""Likelihoods: the observed site of a supervised model, as swappable objects.

A model is net × prior × likelihood × guide.  The likelihood owns what the net's outputs mean:
how many outputs it needs, the distribution of ``y`` given them (the site ``"obs"``), the
pointwise ``log p(y_i | x_i, theta)`` that :mod:`zoo.compare` scores, and its own learned
parameters (a regressor's noise).  The model calls it inside its data plate, which scales the
log-likelihood by ``N / B``.

* :class:`Categorical` -- ``y`` in ``{0, ..., C-1}``, ``C`` logits (softmax regression).
* :class:`Bernoulli` -- binary ``y`` in ``{0, 1}``, **one** logit: ``p(y=1) = sigmoid(f(x))``,
  logistic regression when ``f`` is linear.
* :class:`Normal` -- real ``y``, one output, ``y ~ N(f(x), sigma^2)``; ``sigma`` learned (a
  point estimate, as in Blundell et al. 2015's regression experiments) or fixed.

Targets are checked against the outputs: a regression target of shape ``(N, 1)`` against
predictions ``(N,)`` would broadcast to an ``(N, N)`` table and score every prediction against
every target, so it is refused (:func:`zoo.data.from_tensors` turns ``(N, 1)`` into ``(N,)``).

Usage::

    from zoo.likelihoods import Bernoulli, Normal, make_likelihood
    lik = make_likelihood("bernoulli", info)      # or Bernoulli(), Normal(scale=0.1, learn=False)
    lik.out_features(info)                        # 1
    with pyro.plate("data", len(x)):
        lik(net(x), y)                            # pyro.sample("obs", ..., obs=y)
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from zoo.data import DataInfo
from zoo.util import unknown_choice

__all__ = [
    "LIKELIHOODS",
    "Bernoulli",
    "Categorical",
    "ClassLikelihood",
    "Likelihood",
    "Normal",
    "class_probs",
    "make_likelihood",
]


class Likelihood(PyroModule):
    """The observed site ``"obs"`` of a supervised model; subclasses give its form.

    ``forward(out, y=None)`` samples (or observes) ``y`` given the net's outputs ``out`` and
    returns the distribution; call it inside the model's data plate.
    """

    #: the data task it fits, as in :attr:`zoo.data.DataInfo.task`
    task: ClassVar[str] = ""

    def out_features(self, info: DataInfo) -> int:
        """How many outputs per example the net must give for data ``info``."""
        raise NotImplementedError

    def check(self, info: DataInfo) -> None:
        """Refuse data this likelihood cannot describe.

        :raises ValueError: naming the data's task and what this likelihood needs.
        """
        if info.task != self.task:
            raise ValueError(
                f"the {type(self).__name__} likelihood fits {self.task} data, but the data's "
                f"task is {info.task!r}"
            )

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        """``p(y | out)`` with batch shape ``(N,)``."""
        raise NotImplementedError

    def prepare_target(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``y`` as the distribution scores it (dtype, shape), checked against ``out``."""
        return y

    def pointwise_log_prob(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y_i | out_i)`` in float64, shape ``(N,)``, for PSIS-LOO and WAIC.

        The outputs are cast to float64 before any log-probability is formed, and classifiers
        go from logits to log-probabilities directly (``log_softmax``, ``logsigmoid``), never
        through probabilities: in float32 a confident point's log-likelihood rounds to exactly
        0 in every draw, and PSIS's Pareto k of such a point is infinite (a false alarm).  This
        default scores :meth:`distribution` of the float64 outputs.
        """
        out = out.double()
        return self.distribution(out).log_prob(self.prepare_target(y, out))

    def forward(self, out: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        fn = self.distribution(out)
        obs = None if y is None else self.prepare_target(y, out)
        if obs is not None and obs.shape != fn.batch_shape:
            raise ValueError(
                f"targets of shape {tuple(y.shape)} do not match the {type(self).__name__} "
                f"likelihood's {tuple(fn.batch_shape)} (one per example)"
            )
        pyro.sample("obs", fn, obs=obs)
        return fn


class ClassLikelihood(Likelihood):
    """A classifier's likelihood: it gives every example a probability per class."""

    task: ClassVar[str] = "classification"

    def class_log_probs(self, out: torch.Tensor) -> torch.Tensor:
        """``log p(y = c | out)``, shape ``(N, C)``."""
        raise NotImplementedError

    def prepare_target(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return y.long()


class Categorical(ClassLikelihood):
    """``y ~ Categorical(softmax(out))`` with ``C`` outputs per example."""

    def out_features(self, info: DataInfo) -> int:
        return int(info.num_classes)

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        if out.dim() != 2:
            raise ValueError(
                f"a Categorical likelihood needs (N, C) logits, got {tuple(out.shape)}"
            )
        return dist.Categorical(logits=out)

    def class_log_probs(self, out: torch.Tensor) -> torch.Tensor:
        return out.log_softmax(-1)

    def pointwise_log_prob(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # log p_y = -log(1 + sum_{c != y} e^{z_c - z_y}): log_softmax loses a confident
        # point's e^{-40} against the 40 it subtracts, even in float64; log1p keeps it
        z = out.double()
        diff = z - z.gather(-1, y.long().reshape(-1, 1))
        others = diff.masked_fill(F.one_hot(y.long(), z.shape[-1]).bool(), -math.inf)
        return -torch.logaddexp(torch.zeros_like(diff[:, 0]), others.logsumexp(-1))


class Bernoulli(ClassLikelihood):
    """Binary ``y ~ Bernoulli(sigmoid(out))`` with one output (logit) per example.

    With a linear net this is logistic regression: ``log p(y | x, w) = y z - log(1 + e^z)``,
    ``z = w·x + b``.
    """

    def out_features(self, info: DataInfo) -> int:
        return 1

    def check(self, info: DataInfo) -> None:
        super().check(info)
        if info.num_classes != 2:
            raise ValueError(
                f"the Bernoulli likelihood needs binary labels (2 classes), the data has "
                f"{info.num_classes}; use the Categorical likelihood"
            )

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        if out.dim() != 2 or out.shape[-1] != 1:
            raise ValueError(f"a Bernoulli likelihood needs (N, 1) logits, got {tuple(out.shape)}")
        return dist.Bernoulli(logits=out.squeeze(-1))

    def prepare_target(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return y.to(out.dtype)

    def class_log_probs(self, out: torch.Tensor) -> torch.Tensor:
        z = out.squeeze(-1)
        return torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], -1)

    def pointwise_log_prob(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # log sigmoid(z) for y = 1, log sigmoid(-z) for y = 0: exact in the tails
        z = out.double().squeeze(-1)
        return F.logsigmoid(torch.where(self.prepare_target(y, z) > 0.5, z, -z))


class Normal(Likelihood):
    """``y ~ N(out, scale^2)`` with one output per example.

    :param scale: the noise standard deviation (its initial value when learned).
    :param learn: learn ``scale`` as a point estimate (a positive ``PyroParam``), or keep it fixed.
    """

    task: ClassVar[str] = "regression"

    def __init__(self, scale: float = 1.0, *, learn: bool = True) -> None:
        super().__init__()
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"the noise scale must be positive and finite, got {scale}")
        self.learn = bool(learn)
        if self.learn:
            self.noise = PyroParam(torch.tensor(float(scale)), constraint=constraints.positive)
        else:
            self.register_buffer("noise", torch.tensor(float(scale)))

    def out_features(self, info: DataInfo) -> int:
        return 1

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        if out.dim() != 2 or out.shape[-1] != 1:
            raise ValueError(f"a Normal likelihood needs (N, 1) outputs, got {tuple(out.shape)}")
        return dist.Normal(out.squeeze(-1), self.noise)

    def prepare_target(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return y.to(out.dtype)

    def pointwise_log_prob(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.double()
        noise = self.noise.detach().double()
        return dist.Normal(out.squeeze(-1), noise).log_prob(self.prepare_target(y, out))


#: The likelihoods by the names :func:`make_likelihood` and ``zoo.from_module`` take.
LIKELIHOODS = {"categorical": Categorical, "bernoulli": Bernoulli, "normal": Normal}


def make_likelihood(
    name: str | Likelihood | None,
    info: DataInfo,
    *,
    noise: float = 1.0,
    learn_noise: bool = True,
) -> Likelihood:
    """The likelihood ``name`` (or ``name`` itself when it is one), checked against ``info``.

    :param name: a key of :data:`LIKELIHOODS`, a :class:`Likelihood`, or ``None`` for the
        data's default: Categorical for classification, Normal for regression.
    :param noise: the Normal likelihood's (initial) noise scale.
    :param learn_noise: whether the Normal likelihood learns its noise.
    :raises ValueError: for an unknown name or a likelihood that does not fit the data's task.
    """
    if name is None:
        name = "normal" if info.task == "regression" else "categorical"
    if isinstance(name, Likelihood):
        lik = name
    elif name in LIKELIHOODS:
        lik = Normal(noise, learn=learn_noise) if name == "normal" else LIKELIHOODS[name]()
    else:
        raise unknown_choice("likelihood", str(name), sorted(LIKELIHOODS))
    lik.check(info)
    return lik


def class_probs(fn: dist.Distribution) -> torch.Tensor:
    """Class probabilities ``(..., C)`` of an observed site's distribution: a Categorical's
    ``probs``, or ``(1 - p, p)`` for a Bernoulli.

    :raises ValueError: for any other distribution.
    """
    if isinstance(fn, dist.Categorical):
        return fn.probs
    if isinstance(fn, dist.Bernoulli):
        p = fn.probs
        return torch.stack([1 - p, p], -1)
    raise ValueError(f"the 'obs' site is {type(fn).__name__}, not a Categorical or Bernoulli")
