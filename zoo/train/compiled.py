"""A compiled training step: the loss and its gradients traced once, then run by Inductor.

Pyro's ELBOs run the guide and the model through its effect handlers at every step: a
``Message`` per site, a distribution object per site, and two host reads per call in
``Trace_ELBO`` (``torch_item`` of every site's log-density and ``warn_if_nan``), each a graph
break for ``torch.compile`` (issue 19).  :class:`CompiledStep` instead computes the ELBO from
the two traces itself (no host read), traces that function and its gradients once with
``make_fx`` over :func:`torch.func.grad_and_value`, the parameters swapped in as inputs by
:func:`torch.func.functional_call`, and compiles the traced graph with Inductor.  The noise is
drawn inside the graph from the global generator (a fresh draw at every call); the minibatch
and the KL weight ``beta`` are inputs.  The update stays the trainer's Adam.

What it supports: models whose guide is reparameterized at every site, with the ``trace`` or
``meanfield`` ELBO and one particle, in one process.  It refuses, with the reason,
enumeration (``traceenum``), score-function estimators (``tracegraph``, or a guide site
without ``rsample``), several particles, DDP, and control flow that reads the data (found by
tracing with fake tensors, which cannot be read on the host).

Usage::

    from zoo import create_model, fit, load
    data = load("digits")
    result = fit(create_model("logreg", data=data), data, num_epochs=5, compile=True)

    step = CompiledStep(zm, num_data=len(x))     # what the trainer builds with compile=True
    loss = step.loss_and_grads(xb, yb, beta)     # -ELBO (a tensor); sets every .grad
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence
from torch.fx.experimental.proxy_tensor import make_fx

from zoo.spec import ZooModel
from zoo.train.graphs import Capture, CapturedGraph
from zoo.util import local_params

__all__ = ["CompileError", "CompiledStep", "build_compiled", "neg_elbo", "unsupported_reason"]


class CompileError(ValueError):
    """The model cannot run as a compiled step; the message says why."""


def unsupported_reason(elbo: str, num_particles: int, distributed: bool) -> str | None:
    """Why a run with these settings cannot be compiled, or ``None`` if nothing refuses it
    before tracing (tracing may still refuse the model: :meth:`CompiledStep.build`).

    Usage::

        unsupported_reason("traceenum", 1, False)   # 'enumeration (traceenum) ...'
    """
    if elbo == "traceenum":
        return (
            "enumeration (elbo='traceenum') sums discrete sites out with shapes chosen by "
            "Pyro's handlers at run time; it is not traced"
        )
    if elbo == "tracegraph":
        return (
            "score-function gradients (elbo='tracegraph') need Pyro's dependency tracking "
            "and baselines, which are not traced"
        )
    if num_particles != 1:
        return f"num_particles={num_particles}: the compiled step draws one particle"
    if distributed:
        return "distributed (DDP) training: the compiled step runs in one process"
    return None


def neg_elbo(
    model: Callable, guide: Callable, xb: Any, yb: Any, n: int, beta: Any, analytic: bool
) -> Any:
    """``-ELBO`` from the traces, with no host read: observed log-likelihoods, minus ``beta``
    times, at each latent site, its closed-form KL where one is registered and ``analytic``
    (``meanfield``'s estimator) and ``log q - log p`` otherwise (``trace``'s).

    Usage::

        loss = neg_elbo(model, guide, xb, yb, n=len(x), beta=1.0, analytic=True)
    """
    guide_tr = poutine.trace(guide).get_trace(xb, yb, num_data=n)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(xb, yb, num_data=n)
    guide_tr, model_tr = prune_subsample_sites(guide_tr), prune_subsample_sites(model_tr)
    loglik, kl = 0.0, 0.0
    for name, site in model_tr.nodes.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            lp = site["fn"].log_prob(site["value"])
            loglik = loglik + scale_and_mask(lp, site["scale"], site["mask"]).sum()
            continue
        q = guide_tr.nodes.get(name)
        if q is None:
            raise CompileError(f"latent site {name!r} of the model is not in the guide")
        if not q["fn"].has_rsample:
            raise CompileError(
                f"site {name!r}: its guide distribution has no rsample (a score-function "
                "gradient), which the compiled step does not estimate"
            )
        term = _kl(q, site) if analytic else None
        if term is None:
            term = q["fn"].log_prob(q["value"]) - site["fn"].log_prob(site["value"])
        kl = kl + scale_and_mask(term, q["scale"], q["mask"]).sum()
    return -(loglik - beta * kl)


def _kl(q: dict, p: dict) -> Any:
    try:
        return kl_divergence(q["fn"], p["fn"])
    except NotImplementedError:
        return None


class _Loss(torch.nn.Module):
    """``zm``'s ``-ELBO`` as a module, so that :func:`torch.func.functional_call` can swap its
    parameters for traced inputs."""

    def __init__(self, zm: ZooModel, num_data: int, analytic: bool) -> None:
        super().__init__()
        self.zm, self.num_data, self.analytic = zm, num_data, analytic
        # registered here (a ZooModel is not a module) so that functional_call finds them
        self.model, self.guide = zm.model, zm.guide

    def forward(self, xb: torch.Tensor, yb: torch.Tensor | None, beta: torch.Tensor) -> Any:
        model, guide = self.zm.callables()
        return neg_elbo(model, guide, xb, yb, self.num_data, beta, self.analytic)


def _compile(gm: Callable, backend: str) -> Callable:
    with warnings.catch_warnings():
        # torch 2.13's Inductor imports torch.utils.mkldnn, which warns that its own
        # torch.jit.script_method is deprecated: torch's warning, not the user's to act on
        warnings.filterwarnings("ignore", "`torch.jit.script_method`", DeprecationWarning)
        import torch._inductor.compile_fx

    return torch.compile(gm, backend=backend)


class CompiledStep:
    """The loss and gradients of ``zm``'s ``-ELBO``, traced once per minibatch shape and
    compiled with Inductor (``torch.compile`` of the traced graph).

    Usage::

        step = CompiledStep(zm, num_data=len(x))
        loss = step.loss_and_grads(xb, yb, beta=1.0)    # a 0-d tensor; .grad set
        step.compile_seconds                            # tracing and compiling, all shapes

    :param zm: the model; its parameters are read at every call (the optimizer updates them
        in place).
    :param num_data: ``N``, the training-set size the likelihood is scaled to.
    :param analytic: use registered closed-form KLs (the ``meanfield`` ELBO's estimator);
        ``False`` scores ``log q - log p`` at every latent site (``trace``'s).
    :param backend: ``torch.compile``'s backend for the traced graph (``None``: run the traced
        graph eagerly, without Python's per-site overhead but without fusion).
    :param cuda_graphs: capture the traced graph (eager, not ``backend``'s: its random numbers
        must stay graph safe) as a CUDA graph per minibatch shape and replay it
        (:mod:`zoo.train.graphs`).
    :param capture: how to capture (:func:`zoo.train.graphs.cuda_capture` by default;
        :func:`zoo.train.graphs.eager_capture` runs the same protocol on the CPU).
    :raises CompileError: when tracing finds something the compiled step does not support.

    :ivar compile_seconds: seconds spent tracing and compiling so far.
    """

    @local_params()
    def __init__(
        self,
        zm: ZooModel,
        num_data: int,
        analytic: bool = True,
        backend: str | None = "inductor",
        cuda_graphs: bool = False,
        capture: Capture | None = None,
    ) -> None:
        self.zm, self.num_data, self.backend = zm, num_data, backend
        self.cuda_graphs, self.capture = cuda_graphs, capture
        self.module = _Loss(zm, num_data, analytic)
        self.names = [n for n, _ in self.module.named_parameters()]
        self.params = [p for _, p in self.module.named_parameters()]
        self._graphs: dict[tuple, Callable] = {}
        self.compile_seconds = 0.0

    @property
    def shapes(self) -> list[tuple]:
        """The ``(xb, yb)`` shapes traced and compiled so far, one graph each."""
        return list(self._graphs)

    def _loss_fn(self, params: tuple, xb: Any, yb: Any, beta: Any) -> Any:
        named = dict(zip(self.names, params, strict=True))
        return torch.func.functional_call(self.module, named, (xb, yb, beta))

    @local_params()
    def trace(self, xb: torch.Tensor, yb: torch.Tensor | None, mode: str = "real") -> Any:
        """The traced graph (a ``GraphModule``) of ``(params, xb, yb, beta) -> (grads, loss)``.

        :param mode: ``make_fx``'s ``tracing_mode``; ``fake`` refuses control flow that reads
            the data (its tensors hold no values).
        :raises CompileError: with the reason tracing failed.
        """
        grad_and_value = torch.func.grad_and_value(self._loss_fn)

        def grad_fn(params: tuple, xb: Any, yb: Any, beta: Any) -> Any:
            return grad_and_value(params, xb, yb, beta)

        beta = torch.ones((), device=xb.device)
        params = tuple(p.detach() for p in self.params)
        try:
            # validation reads every distribution's arguments on the host
            with poutine.block(), pyro.validation_enabled(False), torch.random.fork_rng([]):
                return make_fx(grad_fn, tracing_mode=mode, _allow_non_fake_inputs=True)(
                    params, xb, yb, beta
                )
        except CompileError:
            raise
        except Exception as exc:  # a data-dependent branch, an untraceable op, ...
            raise CompileError(
                f"{self.zm.name} cannot be traced into one graph ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); control flow that depends "
                "on the data's values (or an op make_fx cannot trace) keeps it eager"
            ) from exc

    def _graph(self, xb: torch.Tensor, yb: torch.Tensor | None) -> Callable:
        key = (tuple(xb.shape), None if yb is None else tuple(yb.shape))
        graph = self._graphs.get(key)
        if graph is None:
            started = time.perf_counter()
            self.trace(xb, yb, mode="fake")  # refuses data-dependent control flow
            gm = self.trace(xb, yb)
            if self.cuda_graphs:
                params = tuple(p.detach() for p in self.params)  # the parameters' storage
                graph = CapturedGraph(gm, params, xb, yb, self.capture)
            else:
                graph = gm if self.backend is None else _compile(gm, self.backend)
                with torch.random.fork_rng(devices=[]):  # the first call compiles; no draw
                    self._run(graph, xb, yb, 1.0)
            self._graphs[key] = graph
            self.compile_seconds += time.perf_counter() - started
        return graph

    def _run(self, graph: Callable, xb: Any, yb: Any, beta: float) -> tuple[Any, Any]:
        params = tuple(p.detach() for p in self.params)
        beta_t = torch.tensor(float(beta), device=xb.device)
        with torch.no_grad():
            return graph(params, xb, yb, beta_t)

    def loss_and_grads(self, xb: torch.Tensor, yb: torch.Tensor | None, beta: float) -> Any:
        """``-ELBO`` of the minibatch at KL weight ``beta`` (a 0-d tensor, no host read), and
        every parameter's ``.grad`` set to its gradient."""
        graph = self._graph(xb, yb)
        if isinstance(graph, CapturedGraph):
            grads, loss = graph(xb, yb, beta)  # the same output tensors at every replay
        else:
            grads, loss = self._run(graph, xb, yb, beta)
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        return loss


def build_compiled(
    zm: ZooModel,
    elbo: str,
    num_particles: int,
    distributed: bool,
    xb: Any,
    yb: Any,
    n: int,
    cuda_graphs: bool = False,
) -> CompiledStep:
    """The trainer's compiled step for ``zm``, checked by a trace with fake tensors on the
    minibatch ``(xb, yb)`` (the graphs themselves are compiled, or captured as CUDA graphs
    with ``cuda_graphs``, at the first step of each minibatch shape).

    Usage::

        step = build_compiled(zm, "meanfield", 1, False, x[:100], y[:100], n=len(x))

    :raises CompileError: (a ``ValueError``) saying why the run cannot be compiled.
    """
    reason = unsupported_reason(elbo, num_particles, distributed)
    if reason is not None:
        raise CompileError(f"compile=True is not supported for {zm.name}: {reason}")
    if cuda_graphs and xb.device.type != "cuda":
        raise CompileError(
            f"cuda_graphs=True needs a CUDA device; {zm.name} trains on {xb.device} (a CUDA "
            "graph is captured and replayed by the GPU; compile=True alone runs on the CPU)"
        )
    step = CompiledStep(zm, n, analytic=elbo == "meanfield", cuda_graphs=cuda_graphs)
    step.trace(xb, yb, mode="fake")
    return step
