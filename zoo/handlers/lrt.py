"""The local reparameterization trick (Kingma, Salimans & Welling 2015) as a Pyro effect handler.

Under :class:`LocalReparameterization`, every weight a guide draws from a Gaussian (or from the
Bernoulli-dropout family of :class:`guides.dropout.DropoutWeight`) is remembered together with
its distribution.  When the model's Bayesian layer (:class:`zoo.priors.BayesianLinear`,
:class:`zoo.priors.BayesianConv1d` and its 2-D and 3-D twins) later receives that same tensor,
replayed from the guide, it does not multiply by it: it samples the pre-activations instead, ::

    b = x @ theta.T + bias + sqrt((x ** 2) @ (sigma ** 2).T + 1e-8) * eps,   eps ~ N(0, I)

with one ``eps`` per example and output unit, and the convolutional analogue (1-, 2- or 3-D, any
stride, padding, dilation and groups) with two convolutions.  No per-example weight is ever
formed and the bias gets no noise (Molchanov et al. 2017 found that noise on the bias caused
the NaNs users reported).  Per example the output has
exactly the distribution it has under a weight sample, and the estimator's variance is lower.

With ``draw_weights=False`` the guide's weight sites (those a guide marks
``infer={"weight": True}``, as :class:`guides.dropout.WeightGuide` does) are not sampled at all:
the site's value is the posterior mean, a fresh tensor that only serves to find ``q`` again in
the layer.  No weight noise is drawn that nothing reads.  This is exact only when the ELBO never
reads those values either, i.e. when every such site has a closed-form ``KL(q || p)``, as with
:class:`zoo.elbo.MeanFieldELBO` (which refuses a site without one).  The zoo's BNN entries use it.

``mode="per_example"`` instead draws a separate weight sample for every example (memory
``B x |W|``), the middle row of Kingma's Table 1.  Without the handler the layer uses the one
weight sample the guide drew for the whole minibatch.  Recurrent layers (:mod:`zoo.recurrent`)
always do, handler or not: the trick does not apply across time steps, and the guides leave
their sites unmarked, so they are drawn even with ``draw_weights=False``.

Usage::

    lrt = LocalReparameterization()
    svi = SVI(lrt(model), lrt(guide), Adam({"lr": 1e-3}), TraceMeanField_ELBO())

or ``with LocalReparameterization(): loss = elbo.loss_and_grads(model, guide, x, y)``.
"""

from __future__ import annotations

import weakref
from typing import Any

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger

__all__ = ["MODES", "LocalReparameterization", "active", "conv", "conv2d", "linear"]

#: ``lrt``: sample pre-activations; ``per_example``: one weight sample per example.
MODES = ("lrt", "per_example")
_VAR_EPS = 1e-8
_ACTIVE: list[LocalReparameterization] = []


def _base(fn: Any) -> Any:
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
        fn = fn.base_dist
    return fn


class LocalReparameterization(Messenger):
    """Effect handler that makes Bayesian layers sample activations instead of weights.

    :param mode: ``"lrt"`` (default) or ``"per_example"``; see the module docstring.
    :param draw_weights: sample the guide's marked weight sites (the default) or put their
        mean there; ``False`` needs an ELBO that uses closed-form KLs (module docstring).
    """

    def __init__(self, mode: str = "lrt", *, draw_weights: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__()
        self.mode = mode
        self.draw_weights = draw_weights
        # id(value) -> (weak reference to value, its distribution).  Weak, so a handler wrapped
        # around a whole training loop does not keep every step's weights and graphs alive.
        self._posteriors: dict[int, tuple[weakref.ref, Any]] = {}

    def __enter__(self) -> LocalReparameterization:
        _ACTIVE.append(self)
        return super().__enter__()

    def __exit__(self, *exc: object) -> Any:
        _ACTIVE.remove(self)
        if self not in _ACTIVE:
            self._prune()
        return super().__exit__(*exc)

    def _prune(self) -> None:
        dead = [k for k, (ref, _) in self._posteriors.items() if ref() is None]
        for k in dead:
            del self._posteriors[k]

    def _pyro_sample(self, msg: dict) -> None:
        if (
            self.draw_weights
            or msg["value"] is not None
            or msg["is_observed"]
            or not msg["infer"].get("weight")
        ):
            return
        fn = _base(msg["fn"])
        if isinstance(fn, dist.Normal) or hasattr(fn, "dropout_input"):
            # A new tensor object per call (a view, no copy): the layer finds q by its identity.
            msg["value"] = fn.mean.detach().expand(msg["fn"].shape())
            msg["infer"]["weight_not_drawn"] = True

    def _pyro_post_sample(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        value = msg["value"]
        if not isinstance(value, torch.Tensor) or self.posterior(value) is not None:
            return  # the model replaying a guide sample: the guide's entry stands
        fn = _base(msg["fn"])
        if isinstance(fn, dist.Normal) or hasattr(fn, "dropout_input"):
            if len(self._posteriors) > 1024:
                self._prune()
            self._posteriors[id(value)] = (weakref.ref(value), fn)

    def posterior(self, value: torch.Tensor) -> Any:
        """The distribution ``value`` was drawn from inside this handler, or ``None``."""
        entry = self._posteriors.get(id(value))
        if entry is None or entry[0]() is not value:
            return None
        return entry[1]


def active() -> LocalReparameterization | None:
    """The innermost active handler, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


def _lookup(weight: torch.Tensor) -> tuple[str, Any] | None:
    handler = active()
    if handler is None:
        return None
    q = handler.posterior(weight)
    if q is None:
        return None
    if q.batch_shape != weight.shape:
        raise ValueError(
            f"local reparameterization needs one weight tensor per draw, got a posterior of batch "
            f"shape {tuple(q.batch_shape)} for a weight of shape {tuple(weight.shape)} "
            "(vectorized particles are not supported: use num_particles without vectorization)"
        )
    return handler.mode, q


def _check_weight(weight: torch.Tensor, dim: int, layer: str) -> None:
    if weight.dim() != dim:
        raise ValueError(
            f"{layer} got a weight of shape {tuple(weight.shape)}; Bayesian layers take one weight "
            "sample per call (vectorized particles are not supported: use num_particles without "
            "vectorization)"
        )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear``, or its locally reparameterized form when ``weight`` came from a guide."""
    _check_weight(weight, 2, "Linear")
    found = _lookup(weight)
    if found is None:
        return F.linear(x, weight, bias)
    mode, q = found
    if hasattr(q, "dropout_input"):
        return F.linear(q.dropout_input(x, -1), q.loc, bias)
    if mode == "per_example":
        w = q.loc + q.scale * torch.randn(
            (x.shape[0], *q.loc.shape), dtype=x.dtype, device=x.device
        )
        out = torch.einsum("b...i,boi->b...o", x, w)
        return out if bias is None else out + bias
    mean = F.linear(x, q.loc, bias)
    var = F.linear(x.square(), q.variance)
    return mean + (var + _VAR_EPS).sqrt() * torch.randn_like(mean)


#: ``torch.nn.functional`` convolution per number of spatial dimensions.
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    dims: int | None = None,
) -> torch.Tensor:
    """``F.conv1d/2d/3d``, or its locally reparameterized form when ``weight`` came from a guide.

    Under the LRT the output is sampled from two convolutions, mean ``conv(x, theta) + bias`` and
    variance ``conv(x², sigma²)``, with the layer's stride, padding, dilation and groups; with
    ``per_example`` one grouped convolution applies each example's own kernel to it.

    Usage::

        out = conv(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation,
                   layer.groups, dims=1)        # inside a Conv1d's forward

    :param dims: the number of spatial dimensions (1, 2 or 3); ``weight.dim() - 2`` when
        omitted.  A layer passes its own, so that a weight with an extra (particle) dimension
        is refused instead of being taken for a higher-dimensional kernel.
    :raises ValueError: for a weight that is not ``dims + 2``-dimensional.
    """
    dims = weight.dim() - 2 if dims is None else dims
    if dims not in _CONV:
        raise ValueError(
            f"a convolution has 1, 2 or 3 spatial dimensions, got a weight of shape "
            f"{tuple(weight.shape)}"
        )
    _check_weight(weight, dims + 2, f"Conv{dims}d")
    conv_nd = _CONV[dims]
    found = _lookup(weight)
    if found is None:
        return conv_nd(x, weight, bias, stride, padding, dilation, groups)
    mode, q = found
    if hasattr(q, "dropout_input"):
        return conv_nd(q.dropout_input(x, 1), q.loc, bias, stride, padding, dilation, groups)
    if mode == "per_example":
        # A grouped convolution applies example b's own kernel to example b.
        batch, channels = x.shape[:2]
        w = q.loc + q.scale * torch.randn((batch, *q.loc.shape), dtype=x.dtype, device=x.device)
        out = conv_nd(
            x.reshape(1, batch * channels, *x.shape[2:]),
            w.reshape(-1, *q.loc.shape[1:]),
            None,
            stride,
            padding,
            dilation,
            groups * batch,
        )
        out = out.reshape(batch, -1, *out.shape[2:])
        return out if bias is None else out + bias.reshape(1, -1, *([1] * dims))
    mean = conv_nd(x, q.loc, bias, stride, padding, dilation, groups)
    var = conv_nd(x.square(), q.variance, None, stride, padding, dilation, groups)
    return mean + (var + _VAR_EPS).sqrt() * torch.randn_like(mean)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> torch.Tensor:
    """:func:`conv` for a ``Conv2d`` layer (a 4-D weight)."""
    return conv(x, weight, bias, stride, padding, dilation, groups, dims=2)
