"""CUDA graphs for the compiled step: the traced loss and gradients captured once per
minibatch shape and replayed at every step (issue 19, item 4).

On a GPU a small net's step is a few hundred short kernels, and launching them from Python
costs more than running them.  :class:`CapturedGraph` records the traced graph of
:class:`~zoo.train.compiled.CompiledStep` (``make_fx`` over the loss and its gradients, no host
read) as one CUDA graph over static buffers: the minibatch and the KL weight ``beta`` are
copied into them before each replay, the parameters are read in place (Adam updates them in
place, so the graph sees each step's values), and the gradients and the loss come back in
the same output tensors every step.  The noise stays fresh: torch's CUDA generator is graph
safe, each replay advancing its Philox offset (PyTorch's "CUDA Graphs" notes), which is why
the captured graph is the eager traced one and not Inductor's (whose random seeds a manual
capture would freeze).  What stays outside the graph: the fused Adam update (one kernel
launch per parameter group, its step count on the device, no host read), the scheduler, and
the trainer's one read of the loss and one of the gradients' finiteness per step, which keep
a divergence from ever being saved.

Usage::

    fit(zm, data, device="cuda", compile=True, cuda_graphs=True)   # or zoo train --cuda-graphs

    graph = CapturedGraph(traced, params, xb, yb)   # what CompiledStep builds per shape
    grads, loss = graph(xb_next, yb_next, beta=0.5)  # the same output tensors at every call
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Capture", "CapturedGraph", "cuda_capture", "eager_capture"]

#: ``capture(fn) -> (replay, outputs)``: run ``fn`` into static ``outputs``; ``replay()``
#: runs it again, writing the same tensors.
Capture = Callable[[Callable[[], Any]], tuple[Callable[[], None], Any]]

#: warm-up calls before a capture (the caching allocator's blocks, lazily loaded kernels).
WARMUP_CALLS = 2


def cuda_capture(fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
    """Capture ``fn`` (no host reads, static shapes) as a :class:`torch.cuda.CUDAGraph`, after
    :data:`WARMUP_CALLS` calls on a side stream, as PyTorch's notes prescribe.  The warm-up
    draws from a forked random state: the run's noise stream is the same as without it.

    :returns: ``graph.replay`` and the graph's static outputs.
    """
    device = torch.cuda.current_device()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.random.fork_rng(devices=[device]):
        for _ in range(WARMUP_CALLS):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn()
    return graph.replay, outputs


def eager_capture(fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
    """A stand-in for :func:`cuda_capture` where no GPU is: ``replay`` calls ``fn`` and copies
    its results into the first call's tensors, so that the static-buffer protocol of
    :class:`CapturedGraph` runs (and is tested) on the CPU.  Not faster than eager.  Like a
    CUDA capture, the first call draws from a forked random state."""
    with torch.random.fork_rng(devices=[]):
        outputs = fn()
    flat = _tensors(outputs)

    def replay() -> None:
        for static, new in zip(flat, _tensors(fn()), strict=True):
            static.copy_(new)

    return replay, outputs


def _tensors(outputs: Any) -> list[torch.Tensor]:
    grads, loss = outputs
    return [*grads, loss]


class CapturedGraph:
    """``fn(params, xb, yb, beta) -> (grads, loss)`` captured over static buffers and replayed.

    :param fn: the traced loss-and-gradients graph (no host read, no data-dependent control
        flow: :meth:`~zoo.train.compiled.CompiledStep.trace` refused those).
    :param params: tensors sharing the parameters' storage; updates in place are seen.
    :param xb: a minibatch of the shape this graph serves (copied into a static buffer).
    :param yb: its targets, or ``None``.
    :param capture: :func:`cuda_capture` (default) or :func:`eager_capture`.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        params: Sequence[torch.Tensor],
        xb: torch.Tensor,
        yb: torch.Tensor | None,
        capture: Capture | None = None,
    ) -> None:
        self.params = tuple(params)
        self.xb = xb.detach().clone()
        self.yb = None if yb is None else yb.detach().clone()
        self.beta = torch.ones((), device=xb.device)

        def run() -> Any:
            with torch.no_grad():
                return fn(self.params, self.xb, self.yb, self.beta)

        self._replay, self.outputs = (capture or cuda_capture)(run)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor | None, beta: float) -> Any:
        """Copy the minibatch and ``beta`` in (device copies, no host read) and replay.

        :returns: ``(grads, loss)``: the same tensors at every call, overwritten by the next.
        """
        self.xb.copy_(xb)
        if self.yb is not None:
            self.yb.copy_(yb)
        self.beta.fill_(float(beta))
        self._replay()
        return self.outputs
