"""Guides for the attention location ``s`` of :mod:`zoo.models.attention`.

The model is ``p(y | x) = sum_s p(s | x) p(y | x_s)``, with ``s`` one of the ``K`` tiles.  Three
guides pair with it:

* :class:`NoGuide` -- nothing to sample: soft attention has no latent, and enumerated hard
  attention sums ``s`` out inside the model (``TraceEnum_ELBO``).
* :class:`PriorAttention` -- ``q(s | x) = p(s | x)``, the model's own attention read, not copied.
  The ELBO is then ``E_{p(s|x)} log p(y | x_s)``, the objective of hard attention trained by
  REINFORCE (Xu et al. 2015, eq. 10; Williams 1992), a lower bound of ``log p(y | x)``.
* :class:`PosteriorAttention` -- ``q(s | x, y)``, an amortized posterior that sees the label
  (variational attention, Deng et al. 2018).  Its ELBO is
  ``E_q log p(y | x_s) - KL(q(s | x, y) || p(s | x))``.

Both sampling guides draw ``s`` from a ``Categorical``, which has no reparameterized sample, so
Pyro's ELBOs estimate their gradient by the score function.  With ``score-avg`` and ``score-nn``
the site carries the baselines of :func:`guides.amortized.baseline_infer`, which only
:class:`pyro.infer.TraceGraph_ELBO` reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from guides.amortized import ESTIMATORS, baseline_infer, check_estimator, mlp
from zoo.plates import data_plate

__all__ = [
    "SCORE_ESTIMATORS",
    "NoGuide",
    "PosteriorAttention",
    "PriorAttention",
    "split_tiles",
    "tile_side",
]

#: The score-function estimators of the attention guides: no baseline, Pyro's decaying-average
#: baseline, and that average plus a neural baseline ``b(x, y)`` (Mnih & Gregor 2014).
SCORE_ESTIMATORS = tuple(e for e in ESTIMATORS if e != "reparam")


def tile_side(input_shape: tuple[int, ...], grid: int) -> int:
    """The side ``T`` of one tile of a ``(1, grid T, grid T)`` input.

    :raises ValueError: for inputs that are not square single-channel grids of ``grid`` tiles.
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if len(input_shape) != 3 or input_shape[0] != 1 or input_shape[1] != input_shape[2]:
        raise ValueError(f"attention needs square (1, H, H) images, got {tuple(input_shape)}")
    side = input_shape[1]
    if side % grid:
        raise ValueError(f"a {side}x{side} image does not split into {grid}x{grid} equal tiles")
    return side // grid


def split_tiles(x: torch.Tensor, grid: int) -> torch.Tensor:
    """The ``K = grid^2`` tiles of images ``x`` ``(B, 1, grid T, grid T)``, row-major and
    flattened, ``(B, K, T^2)``: tile ``k`` is row ``k // grid``, column ``k % grid``."""
    b, _, side, _ = x.shape
    t = side // grid
    return x.reshape(b, grid, t, grid, t).permute(0, 1, 3, 2, 4).reshape(b, grid * grid, t * t)


class NoGuide(nn.Module):
    """The empty guide of a model without latent sites left to sample (soft attention, or hard
    attention enumerated in the model).  Its ``forward`` takes the model's arguments and does
    nothing."""

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        return None


class _ScoreFunctionGuide(PyroModule):
    """What both sampling guides share: the estimator, its baselines and the site ``s``."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        estimator: str,
        baseline_beta: float,
        baseline_hidden: Sequence[int],
    ) -> None:
        super().__init__()
        check_estimator(estimator, baseline_beta, SCORE_ESTIMATORS)
        self.estimator = estimator
        self.baseline_beta = float(baseline_beta)
        self.num_classes = int(num_classes)
        self.site = "s"
        # b(x, y) predicts the downstream cost, log p(y | x_s) (+ the KL part), which depends on
        # the label as much as on the image
        self.baseline = (
            mlp([int(input_dim) + self.num_classes, *map(int, baseline_hidden), 1], "relu")
            if estimator == "score-nn"
            else None
        )

    def logits(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        logits = self.logits(x, y)
        inputs = x.reshape(x.shape[0], -1)
        if y is not None:
            inputs = torch.cat([inputs, F.one_hot(y, self.num_classes).to(inputs.dtype)], -1)
        elif self.estimator == "score-nn":
            raise ValueError("the neural baseline b(x, y) needs the labels y")
        infer = baseline_infer(self.estimator, self.baseline_beta, self.baseline, inputs, num_data)
        with data_plate(x, num_data):
            return pyro.sample(self.site, dist.Categorical(logits=logits), infer=infer)


class PriorAttention(_ScoreFunctionGuide):
    """``q(s | x) = p(s | x)``: hard attention trained by REINFORCE (Xu et al. 2015).

    The model's attention network both proposes ``s`` and scores it, so ``log p(s|x) -
    log q(s|x)`` vanishes and the ELBO is ``E_{p(s|x)} log p(y | x_s)``; its gradient is
    ``E[grad log p(y | x_s) + (log p(y | x_s) - b) grad log p(s | x)]`` with baseline ``b``.
    The model is read, not owned (not a submodule), so its parameters are counted once.

    Usage::

        zm = create_model("attention-reinforce")      # builds this guide for the model
        PriorAttention(zm.model, estimator="score-avg")

    :param model: a :class:`zoo.models.attention.TileAttention`.
    :param estimator: one of :data:`SCORE_ESTIMATORS`.
    :param baseline_beta: decay of the moving-average baseline.
    :param baseline_hidden: hidden widths of the neural baseline ``b(x, y)``.
    """

    def __init__(
        self,
        model: nn.Module,
        estimator: str = "score-nn",
        baseline_beta: float = 0.9,
        baseline_hidden: Sequence[int] = (100,),
    ) -> None:
        super().__init__(
            model.input_dim, model.num_classes, estimator, baseline_beta, baseline_hidden
        )
        if not callable(getattr(model, "attention_logits", None)):
            raise TypeError(f"{type(model).__name__} has no attention_logits(x) method")
        self.__dict__["_model"] = model

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The model's attention logits ``log p(s | x)`` up to a constant, ``(B, K)``."""
        return self._model.attention_logits(x)


class PosteriorAttention(_ScoreFunctionGuide):
    """``q(s | x, y)``: an amortized posterior over the attended tile that sees the label
    (Deng et al. 2018, variational attention).

    Each tile goes through its own encoder (an MLP, separate from the model's); a second MLP
    scores the tile features together with the label's one-hot code, and a softmax over the
    ``K`` tiles gives ``q``.  Knowing ``y``, the guide can pick the tile whose content matches the
    label long before the model's prior ``p(s | x)`` has learned to; training pulls the prior
    towards it through the ``KL`` term.

    :param grid: tiles per side, ``K = grid^2``.
    :param input_shape: ``(1, grid T, grid T)``.
    :param num_classes: number of labels.
    :param hidden: hidden widths of the tile encoder.
    :param feature_dim: width of a tile's features.
    :param score_hidden: hidden width of the scoring MLP.
    :param estimator: one of :data:`SCORE_ESTIMATORS`.
    :param baseline_beta: decay of the moving-average baseline.
    :param baseline_hidden: hidden widths of the neural baseline ``b(x, y)``.
    """

    def __init__(
        self,
        grid: int,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (128,),
        feature_dim: int = 64,
        score_hidden: int = 64,
        estimator: str = "score-nn",
        baseline_beta: float = 0.9,
        baseline_hidden: Sequence[int] = (100,),
    ) -> None:
        input_dim = int(torch.Size(input_shape).numel())
        super().__init__(input_dim, num_classes, estimator, baseline_beta, baseline_hidden)
        self.grid = int(grid)
        self.tile = tile_side(tuple(input_shape), self.grid)
        self.encoder = mlp(
            [self.tile**2, *map(int, hidden), int(feature_dim)], "relu", final_activation=True
        )
        self.score = mlp([int(feature_dim) + self.num_classes, int(score_hidden), 1], "relu")

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``log q(s | x, y)`` up to a constant, ``(B, K)``.

        :raises ValueError: without labels: predictions use the model's prior ``p(s | x)``.
        """
        if y is None:
            raise ValueError(
                "PosteriorAttention is q(s | x, y) and needs the labels y; predict with the "
                "model's prior attention p(s | x) instead"
            )
        h = self.encoder(split_tiles(x, self.grid))
        code = F.one_hot(y, self.num_classes).to(h.dtype)
        code = code[:, None, :].expand(-1, h.shape[1], -1)
        return self.score(torch.cat([h, code], -1)).squeeze(-1)
