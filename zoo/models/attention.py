"""Attention as a latent variable (Xu et al. 2015; Deng et al. 2018).

An input ``x`` is a grid of ``K`` tiles (the ``cluttered-tiles`` set of :mod:`zoo.data`).  One
tile encoder ``h_k = f(x_k)`` and one classifier ``g`` are shared by every training mode; an
attention network scores each tile, ``a_k = w(h_k)``, and ``p(s | x) = softmax(a)``::

    s   ~ Categorical(softmax(a(x)))               # which tile explains the label
    y   ~ Categorical(softmax(g(h_s)))             # hard attention:  p(y|x) = sum_s p(s|x) p(y|x_s)
    y   ~ Categorical(softmax(g(sum_k p(k|x) h_k)))  # soft attention: the expectation moved inside

The four modes (``AttentionConfig.mode``) train the same networks differently:

* ``soft`` -- deterministic; maximum likelihood of the soft model (``Trace_ELBO``, no latent).
* ``enum`` -- hard; ``s`` is enumerated in the model (``infer={"enumerate": "parallel"}``) and
  ``TraceEnum_ELBO`` sums it out: the exact marginal likelihood and its exact gradient.
* ``reinforce`` -- hard; ``s`` is drawn from the prior attention ``p(s|x)`` (the guide
  :class:`guides.attention.PriorAttention`) and ``TraceGraph_ELBO`` estimates the gradient of
  ``E_{p(s|x)} log p(y|x_s)`` by the score function, with no baseline, a decaying-average
  baseline or a neural one (``estimator``).
* ``amortized`` -- hard; an amortized posterior ``q(s|x, y)`` (the guide
  :class:`guides.attention.PosteriorAttention`) proposes ``s``; SVI with the score-function
  estimator maximizes ``E_q log p(y|x_s) - KL(q(s|x,y) || p(s|x))``.

Every hard mode predicts with the exact ``p(y|x) = sum_s p(s|x) p(y|x_s)`` (:func:`predict`),
and its attention is ``p(s|x)``: the guide of ``amortized`` needs the label and is used only in
training.  :func:`metrics` reports the accuracy, the attention accuracy (``argmax_s p(s|x)`` is
the object's tile) and the attention entropy; :func:`zoo.models.plots.attention.plot` draws the
attention over the grids.

Usage::

    from zoo import create_model, fit, load
    data = load("cluttered-tiles", source="digits")
    zm = create_model("attention-enum", data=data)
    fit(zm, data, num_epochs=10)
    zm.evaluate(data)   # accuracy, attention_accuracy, attention_entropy, nll
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from torch import nn

from guides.amortized import (
    estimator_problems,
    mlp,
    refuse_vectorized_neural_baseline,
    resize_average_baseline,
)
from guides.attention import (
    SCORE_ESTIMATORS,
    NoGuide,
    PosteriorAttention,
    PriorAttention,
    split_tiles,
    tile_side,
)
from zoo.data import DataInfo
from zoo.models.plots import LazyPlot
from zoo.plates import check_input, data_plate
from zoo.spec import Hooks, ModelSpec, ZooModel
from zoo.util import check_numbers

REFERENCE = (
    "Xu et al. (2015), Show, attend and tell, ICML; Deng, Kim, Chiu, Guo & Rush (2018), "
    "Latent alignment and variational attention, NeurIPS"
)

#: The training modes of :class:`TileAttention`.
MODES = ("soft", "enum", "reinforce", "amortized")

#: The ELBO each mode trains with.
ELBO_FOR_MODE = {
    "soft": "trace",
    "enum": "traceenum",
    "reinforce": "tracegraph",
    "amortized": "tracegraph",
}


@dataclass(frozen=True)
class AttentionConfig:
    """Configuration of the attention family.

    :param mode: ``soft``, ``enum``, ``reinforce`` or ``amortized`` (see the module's docstring).
    :param grid: tiles per side of the input, ``K = grid^2``; must be the data's (the
        ``grid`` of ``cluttered-tiles``), which the input's shape alone does not tell.
    :param hidden: hidden widths of the shared tile encoder (an MLP on one tile's pixels).
    :param feature_dim: width of a tile's features ``h_k``.
    :param attention_hidden: hidden width of the attention network ``a_k = w(h_k)``.
    :param estimator: the score-function estimator of ``reinforce`` and ``amortized``:
        ``score`` (no baseline), ``score-avg`` (decaying average) or ``score-nn`` (average plus
        a neural baseline ``b(x, y)``).
    :param baseline_beta: decay of the moving-average baseline.
    :param baseline_hidden: hidden widths of the neural baseline.
    :param guide_hidden: hidden widths of the amortized posterior's own tile encoder.
    """

    mode: Literal["soft", "enum", "reinforce", "amortized"] = "enum"
    grid: int = 3
    hidden: tuple[int, ...] = (128,)
    feature_dim: int = 64
    attention_hidden: int = 64
    estimator: Literal["score", "score-avg", "score-nn"] = "score-nn"
    baseline_beta: float = 0.9
    baseline_hidden: tuple[int, ...] = (100,)
    guide_hidden: tuple[int, ...] = (128,)

    def __post_init__(self) -> None:
        check_numbers(self)
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.grid < 2:
            problems.append(
                f"grid must be >= 2 (one tile leaves nothing to attend to), got {self.grid}"
            )
        widths = (
            *self.hidden,
            self.feature_dim,
            self.attention_hidden,
            *self.baseline_hidden,
            *self.guide_hidden,
        )
        if any(w < 1 for w in widths):
            problems.append(
                "hidden, feature_dim, attention_hidden and the baseline and guide "
                "widths must be positive"
            )
        problems += estimator_problems(self.estimator, self.baseline_beta, SCORE_ESTIMATORS)
        if problems:
            raise ValueError("; ".join(problems))


class TileAttention(PyroModule):
    """The attention model: shared tile encoder, attention network and classifier.

    :param input_shape: ``(1, grid T, grid T)``.
    :param grid: tiles per side.
    :param num_classes: number of labels.
    :param mode: one of :data:`MODES`; fixes how ``forward`` treats the location ``s``.
    :param hidden: hidden widths of the tile encoder.
    :param feature_dim: width of ``h_k``.
    :param attention_hidden: hidden width of the attention network.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        grid: int,
        num_classes: int,
        mode: str = "enum",
        hidden: Sequence[int] = (128,),
        feature_dim: int = 64,
        attention_hidden: int = 64,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.input_shape = tuple(input_shape)
        self.input_dim = math.prod(self.input_shape)
        self.grid = int(grid)
        self.num_tiles = self.grid**2
        self.tile = tile_side(self.input_shape, self.grid)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.encoder = mlp(
            [self.tile**2, *map(int, hidden), int(feature_dim)], "relu", final_activation=True
        )
        self.attention = mlp([int(feature_dim), int(attention_hidden), 1], "tanh")
        self.classifier = nn.Linear(int(feature_dim), self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``h_k`` for every tile, ``(B, K, feature_dim)``."""
        return self.encoder(split_tiles(x, self.grid))

    def attention_logits(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """``a(x)``, the logits of ``p(s | x)``, ``(B, K)``."""
        return self.attention(self.features(x) if h is None else h).squeeze(-1)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        check_input(x, self.input_shape, type(self).__name__)
        h = self.features(x)
        a = self.attention_logits(x, h)
        with data_plate(x, num_data):
            if self.mode == "soft":
                logits = self.classifier((a.softmax(-1).unsqueeze(-1) * h).sum(-2))
            else:
                infer = {"enumerate": "parallel"} if self.mode == "enum" else {}
                if self.mode == "reinforce":
                    # The guide proposes s from this same p(s|x), so log p(s|x) - log q(s|x)
                    # is zero.  Its pathwise gradient is not: TraceGraph_ELBO would keep
                    # grad log p(s|x) from the model while dropping grad log q(s|x) from the
                    # guide (zero in expectation), which adds the noise of a cost of +1 that
                    # no baseline removes.  Detached, the estimate is Williams' REINFORCE
                    # exactly, E[grad log p(y|x_s) + (log p(y|x_s) - b) grad log p(s|x)].
                    a = a.detach()
                s = pyro.sample("s", dist.Categorical(logits=a), infer=infer)
                # s is (B,) when sampled, (K, 1) when enumerated, (P, B) with vectorized
                # particles: Vindex broadcasts the example index against all of them
                batch = torch.arange(x.shape[0], device=x.device)
                logits = Vindex(self.classifier(h))[batch, s]
            return pyro.sample("y", dist.Categorical(logits=logits), obs=y)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact ``log p(y | x)`` ``(B, C)`` and the attention ``p(s | x)`` ``(B, K)``.

        Hard modes sum over the ``K`` tiles, ``log sum_s p(s|x) p(y|x_s)``; soft attention
        classifies the attention-weighted features.
        """
        check_input(x, self.input_shape, type(self).__name__)
        h = self.features(x)
        log_att = self.attention_logits(x, h).log_softmax(-1)
        if self.mode == "soft":
            log_py = self.classifier((log_att.exp().unsqueeze(-1) * h).sum(-2)).log_softmax(-1)
        else:
            log_py = (log_att.unsqueeze(-1) + self.classifier(h).log_softmax(-1)).logsumexp(-2)
        return log_py, log_att.exp()


# ---------------------------------------------------------------------------------------------
# evaluation


def split_extras(extras: dict[str, Any] | None, split: str, key: str) -> torch.Tensor | None:
    """The tensor ``extras["<key>_<split>"]`` (such as ``location_test``, the object's true
    tiles), or ``None`` when ``extras`` does not hold one."""
    if not extras:
        return None
    value = extras.get(f"{key}_{split}")
    return value if isinstance(value, torch.Tensor) else None


def metrics(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    extras: dict[str, Any] | None = None,
    split: str = "test",
    batch_size: int = 500,
) -> dict[str, float]:
    """Accuracy and ``nll`` of the exact predictive, and the attention's entropy (nats; the
    uniform attention has ``log K``) and accuracy (``argmax_s p(s|x)`` is the object's tile, when
    ``extras`` holds the true tiles of ``split`` as ``location_<split>``).  For ``amortized``,
    ``posterior_attention_accuracy`` is that of ``argmax_s q(s | x, y)``."""
    model: TileAttention = zm.model
    location = split_extras(extras, split, "location")
    rows: dict[str, list[torch.Tensor]] = {"hit": [], "nll": [], "entropy": [], "att": [], "q": []}
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        log_py, att = model.predict(xb)
        rows["entropy"].append(dist.Categorical(probs=att).entropy())
        rows["att"].append(att.argmax(-1))
        if y is not None:
            yb = y[i : i + batch_size]
            rows["hit"].append((log_py.argmax(-1) == yb).double())
            rows["nll"].append(-log_py.gather(-1, yb[:, None]).squeeze(-1))
            if isinstance(zm.guide, PosteriorAttention):
                rows["q"].append(zm.guide.logits(xb, yb).argmax(-1))
    out = {"attention_entropy": torch.cat(rows["entropy"]).mean().item()}
    if y is not None:
        out["accuracy"] = torch.cat(rows["hit"]).mean().item()
        out["nll"] = torch.cat(rows["nll"]).mean().item()
    if location is not None and location.shape[0] == x.shape[0]:
        location = location.to(x.device)
        out["attention_accuracy"] = (torch.cat(rows["att"]) == location).double().mean().item()
        if rows["q"]:
            out["posterior_attention_accuracy"] = (
                (torch.cat(rows["q"]) == location).double().mean().item()
            )
    return out


def attention_parameters(zm: ZooModel) -> list[nn.Parameter]:
    """The parameters of the attention network whose gradient the mode estimates: the model's
    ``w`` for ``soft``, ``enum`` and ``reinforce``; the posterior's scoring network for
    ``amortized``, the one trained by the score function."""
    if zm.config.mode == "amortized":
        return list(zm.guide.score.parameters())
    return list(zm.model.attention.parameters())


# ---------------------------------------------------------------------------------------------
# registry glue


def _build(config: AttentionConfig, info: DataInfo) -> TileAttention:
    if info.task != "classification" or info.num_classes is None:
        raise ValueError(f"attention models classify, but the data's task is {info.task!r}")
    return TileAttention(
        info.input_shape,
        config.grid,
        info.num_classes,
        config.mode,
        config.hidden,
        config.feature_dim,
        config.attention_hidden,
    )


def _guide(config: AttentionConfig, info: DataInfo, model: TileAttention) -> nn.Module:
    if config.mode in ("soft", "enum"):
        return NoGuide()
    if config.mode == "reinforce":
        return PriorAttention(model, config.estimator, config.baseline_beta, config.baseline_hidden)
    return PosteriorAttention(
        config.grid,
        info.input_shape,
        model.num_classes,
        hidden=config.guide_hidden,
        feature_dim=config.feature_dim,
        score_hidden=config.attention_hidden,
        estimator=config.estimator,
        baseline_beta=config.baseline_beta,
        baseline_hidden=config.baseline_hidden,
    )


def elbo_for(config: AttentionConfig, train: Any = None) -> str:
    """The ELBO of ``config.mode``: ``trace`` (soft), ``traceenum`` (enum), ``tracegraph``
    (reinforce, amortized).

    :raises ValueError: for another ELBO asked for by ``train.elbo`` (it would drop the
        enumeration or the baselines), or vectorized particles with the neural baseline.
    """
    elbo = ELBO_FOR_MODE[config.mode]
    requested = None if train is None else train.elbo
    if requested is not None and requested != elbo:
        raise ValueError(
            f"attention mode {config.mode!r} trains with elbo {elbo!r}, got {requested!r}"
        )
    if config.mode in ("reinforce", "amortized"):
        refuse_vectorized_neural_baseline(config.estimator, train)
    return elbo


def _batch_transform(
    zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if zm.config.mode in ("reinforce", "amortized") and zm.config.estimator != "score":
        resize_average_baseline(x.shape[0], "s")
    return x, y


_FAMILY = {
    "family": "attention",
    "build_model": _build,
    "guides": {"default": _guide},
    "default_guide": "default",
    "reference": REFERENCE,
    "hooks": Hooks(
        metrics=metrics,
        metrics_with_extras=True,
        plot=LazyPlot("zoo.models.plots.attention"),
        batch_transform=_batch_transform,
        elbo_for=elbo_for,
    ),
    "train_defaults": {"num_epochs": 20, "batch_size": 100, "lr": 1e-3},
}

_DESCRIPTIONS = {
    "soft": "soft attention over a grid of tiles: a weighted average of the tile features",
    "enum": "hard attention, the tile enumerated exactly (TraceEnum_ELBO, marginal likelihood)",
    "reinforce": "hard attention sampled from p(s|x), REINFORCE with baselines (TraceGraph_ELBO)",
    "amortized": "hard attention with an amortized posterior q(s|x,y), score-function SVI",
}

#: The family's registry entries, collected by :mod:`zoo.registry`.
SPECS = tuple(
    ModelSpec(
        name=f"attention-{_mode}{_suffix}",
        description=f"{_DESCRIPTIONS[_mode]}; cluttered {_source} tiles",
        config=AttentionConfig(mode=_mode),
        elbo=ELBO_FOR_MODE[_mode],
        dataset="cluttered-tiles",
        dataset_kwargs={"source": _source},
        **_FAMILY,
    )
    for _mode in MODES
    for _source, _suffix in (("digits", ""), ("fashion-mnist", "-fashion"))
)
