"""Recurrent layers whose weights are sample sites: one draw per minibatch, torch's fused kernel.

Sparse variational dropout for recurrent networks (Lobacheva, Chirkova & Vetrov 2017,
"Bayesian Sparsification of Recurrent Neural Networks") puts the log-uniform prior and the
Gaussian ``q(w) = N(theta, sigma^2)`` of Molchanov et al. (2017) on every input-to-hidden and
hidden-to-hidden weight of an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (``weight_ih_l{k}``,
``weight_hh_l{k}``, their ``_reverse`` twins and an LSTM's projection ``weight_hr_l{k}``); the
biases stay point estimates.  The local reparameterization trick does not apply across time
steps: the hidden state at step ``t`` depends on the same ``W_hh`` as at step ``t - 1``, so
the pre-activations of different steps are not independent given the input.  The weights are
therefore drawn once per minibatch (once per forward call) and that one draw is used at every
time step, as in their paper.

:class:`SampledRecurrent` is the mixin of :class:`zoo.priors.BayesianRNN`,
:class:`~zoo.priors.BayesianLSTM` and :class:`~zoo.priors.BayesianGRU`.  The layer's forward is
torch's own, with its fused kernel (``_VF.lstm`` for an LSTM: no Python loop over time steps),
so ``batch_first``, several layers, bidirectional layers, projections, packed sequences and an
initial state all behave as in torch.  The weights reach the kernel through Pyro:
``PyroModule[nn.RNNBase]`` recomputes the layer's weight list (``_flat_weights``) from its
attributes on every access (Pyro issue 2390), each ``PyroSample`` attribute is one
``pyro.sample`` statement, and its value is cached for the rest of the forward call.  So the
guide's draw (or a ``poutine.condition`` value) is read once per call, i.e. once per minibatch,
and used at every time step.  ``torch.func.functional_call`` would swap the weights through
``setattr`` instead; Pyro's route needs no extra module.

The mixin keeps torch from reading, and thereby sampling, the weights outside a forward call:
``.to()``, ``deepcopy`` and ``flatten_parameters`` (cuDNN's contiguous weight buffer, which a
fresh draw per call could not use anyway) otherwise touch them.

Usage::

    net = nn.LSTM(28, 128, batch_first=True)
    LogUniform().apply_(net)                   # zoo.priors: net is now a BayesianLSTM
    recurrent_weight_names(nn.LSTM(28, 128))   # ('weight_ih_l0', 'weight_hh_l0')
"""

from __future__ import annotations

from torch import nn

from zoo.util import CopiesAsItself

__all__ = ["SampledRecurrent", "recurrent_weight_names"]


def recurrent_weight_names(layer: nn.Module) -> tuple[str, ...]:
    """The names of ``layer``'s weight parameters (``weight_ih_l0``, ``weight_hh_l0``, ...), in
    the order torch registers them; the biases are left out."""
    return tuple(n for n, _ in layer.named_parameters(recurse=False) if n.startswith("weight_"))


class SampledRecurrent(CopiesAsItself):
    """Mixin for an ``nn.RNNBase`` subclass (a ``PyroModule``) whose weights were replaced by
    ``PyroSample`` attributes; see the module docstring."""

    def _init_flat_weights(self) -> None:
        # nn.RNNBase.__init__ and _apply (.to(), .double()) read every weight here and flatten
        # them for cuDNN: nothing to cache, the weights are read in forward.
        self._flat_weight_refs = []

    def _update_flat_weights(self) -> None:
        # nn.RNNBase.forward (and __getstate__) compare the weights with the cached ones here.
        return None

    def __setstate__(self, state: dict) -> None:
        # nn.RNNBase.__setstate__ reads the weights; a zoo layer's state is never a legacy one.
        nn.Module.__setstate__(self, state)  # type: ignore[arg-type]
        self._flat_weight_refs = []
