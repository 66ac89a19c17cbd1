"""NUTS as the reference posterior a guide can be ranked against.

:func:`nuts_reference` samples a zoo model's posterior with the No-U-Turn Sampler (Hoffman &
Gelman 2014, "The No-U-Turn Sampler", JMLR 15) through Pyro's MCMC, on the model itself with its
prior, its point estimates held at their fitted values.  The result, a :class:`NUTSReference`,
goes wherever a fitted model goes in :func:`~zoo.compare.table.compare_models`, which scores its
draws like a guide's.  R-hat and bulk ESS (Vehtari et al. 2021) say whether the chains mixed.

:func:`check_nuts_model` refuses, cheaply, what NUTS cannot sample here: local latent
variables, improper priors, too many latent dimensions.  torch and Pyro are imported inside the
functions; ArviZ is reached through :mod:`zoo.compare.arviz_adapter`.

Usage::

    from zoo.compare import compare_models, nuts_reference
    ref = nuts_reference(zm, data, num_samples=250, warmup=200, num_chains=2)
    print(ref.r_hat_max, ref.ess_bulk_min, ref.divergences)
    result = compare_models({"nuts": ref, "meanfield": zm}, data)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.compare.arviz_adapter import mcmc_diagnostics, mcmc_inference_data, record_warnings
from zoo.compare.vi import base_distribution
from zoo.util import local_params

if TYPE_CHECKING:
    import torch

    from zoo.data import Dataset
    from zoo.spec import ZooModel

__all__ = ["NUTSReference", "check_nuts_model", "nuts_reference"]


@dataclass
class NUTSReference:
    """NUTS draws of a zoo model's latent weights, usable wherever a fitted model is.

    :ivar zm: the model sampled; its point estimates (the biases) were held at their values.
    :ivar samples: site -> ``(chains * draws, ...)`` tensors, chain-major.
    :ivar idata: ArviZ's conversion of the chains (``az.from_pyro`` on 0.x, ``from_dict`` on
        1.x, which has no Pyro converter).
    :ivar r_hat_max: the largest R-hat over all weights (< 1.01 is the usual bar).
    :ivar ess_bulk_min: the smallest bulk effective sample size.
    :ivar divergences: divergent transitions after warm-up, all chains.
    """

    zm: ZooModel
    samples: dict[str, torch.Tensor]
    idata: Any
    num_chains: int
    num_samples: int
    warmup: int
    seconds: float
    r_hat_max: float
    ess_bulk_min: float
    divergences: int
    fingerprint: str
    messages: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.zm.name

    @property
    def guide_name(self) -> str:
        return "nuts"


@local_params()
def check_nuts_model(
    zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None, max_latent_dim: int = 5000
) -> None:
    """Raise ``ValueError`` unless NUTS can sample ``zm``: global latents only, proper priors,
    at most ``max_latent_dim`` dimensions.  Cheap: one guide draw on the examples ``x``."""
    import torch
    from pyro import poutine

    from zoo.priors import ImproperLogUniform

    with torch.no_grad():
        # replayed on a guide draw: an improper prior cannot be sampled, only recognized
        guide_trace = poutine.trace(zm.guide).get_trace(x, y)
        trace = poutine.trace(poutine.replay(zm.model, trace=guide_trace)).get_trace(x, y)
    latents = {
        n: node
        for n, node in trace.nodes.items()
        if node["type"] == "sample" and not node["is_observed"]
    }
    if not latents or any(node["cond_indep_stack"] for node in latents.values()):
        raise ValueError(
            f"{zm.name}: the NUTS reference needs a model whose latent variables are all global"
        )
    for n, node in latents.items():
        if isinstance(base_distribution(node["fn"]), ImproperLogUniform):
            raise ValueError(
                f"{zm.name}: the log-uniform prior on {n} is improper; NUTS needs a proper prior"
            )
    dim = sum(node["value"].numel() for node in latents.values())
    if dim > max_latent_dim:
        raise ValueError(
            f"{zm.name} has {dim} latent dimensions; the NUTS reference is for small models "
            f"(max_latent_dim={max_latent_dim})"
        )


@local_params()
def nuts_reference(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    num_samples: int = 250,
    warmup: int = 200,
    num_chains: int = 2,
    max_tree_depth: int = 8,
    max_latent_dim: int = 5000,
    jit_compile: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> NUTSReference:
    """Sample ``zm``'s posterior with NUTS (Hoffman & Gelman 2014) through ``pyro.infer.MCMC``.

    The model is the zoo model itself, with its prior: for the BNN family the Normal prior on
    the weights.  Its point-estimated parameters (the BNN biases) are *held fixed* at their
    current values, normally those of an SVI fit of the same entry, so NUTS samples exactly the
    posterior over the weights that the guide approximates, given the same biases.  Each chain
    starts at the guide's mean weights (when the guide has them) and runs ``warmup`` adaptation
    steps (step size and diagonal mass matrix) before ``num_samples`` draws.  The chains run one
    after another in this process (``num_chains >= 2`` gives R-hat a second chain).

    :param max_tree_depth: caps the leapfrog steps per draw at ``2**max_tree_depth``.
    :param max_latent_dim: refuse larger models: NUTS is the reference for small ones.
    :raises ValueError: for local latent variables, an improper prior, too many latent
        dimensions, bad counts, or data the model was not built for.
    """
    import torch

    from zoo.data import as_dataset, fingerprint
    from zoo.spec import check_compatible

    _check_counts(num_samples, warmup, num_chains)
    ds = as_dataset(data, y)
    check_compatible(zm, ds)
    device = zm.device
    x_all = ds.x_train.to(device)
    y_all = None if zm.info.task == "unsupervised" else ds.y_train.to(device)
    check_nuts_model(zm, x_all[:2], None if y_all is None else y_all[:2], max_latent_dim)

    chains, runs, divergences, seconds = _sample_chains(
        zm,
        x_all,
        y_all,
        _init_strategy(zm),
        num_chains=num_chains,
        num_samples=num_samples,
        warmup=warmup,
        max_tree_depth=max_tree_depth,
        jit_compile=jit_compile,
        seed=seed,
        progress=progress,
    )
    samples = {k: torch.cat([c[k] for c in chains]) for k in chains[0]}
    stacked = {k: torch.stack([c[k] for c in chains]).cpu().numpy() for k in chains[0]}
    idata, messages = mcmc_inference_data(stacked, runs)
    r_hat, ess = (math.nan, math.nan)
    if num_chains >= 2:
        (r_hat, ess), msg = record_warnings(mcmc_diagnostics, stacked)
        messages += msg
    return NUTSReference(
        zm=zm,
        samples=samples,
        idata=idata,
        num_chains=num_chains,
        num_samples=num_samples,
        warmup=warmup,
        seconds=seconds,
        r_hat_max=r_hat,
        ess_bulk_min=ess,
        divergences=divergences,
        fingerprint=fingerprint(x_all, y_all),
        messages=messages,
    )


def _check_counts(num_samples: Any, warmup: Any, num_chains: Any) -> None:
    """``num_samples``, ``warmup`` and ``num_chains`` integers >= 1, checked in that order."""
    counts = {"num_samples": num_samples, "warmup": warmup, "num_chains": num_chains}
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _init_strategy(zm: ZooModel) -> Any:
    """Start every chain at the guide's mean weights when it has them, else Pyro's uniform."""
    from pyro.infer.autoguide.initialization import init_to_uniform, init_to_value

    if hasattr(zm.guide, "mean_weights"):
        means = {k: v.detach() for k, v in zm.guide.mean_weights(threshold=None).items()}
        return init_to_value(values=means)
    return init_to_uniform


def _sample_chains(
    zm: ZooModel,
    x_all: torch.Tensor,
    y_all: torch.Tensor | None,
    init: Any,
    *,
    num_chains: int,
    num_samples: int,
    warmup: int,
    max_tree_depth: int,
    jit_compile: bool,
    seed: int,
    progress: bool,
) -> tuple[list[dict[str, torch.Tensor]], list[Any], int, float]:
    """Run the chains one after another, chain ``c`` seeded with ``seed + c``, the model's
    point estimates frozen and in evaluation mode (both restored after).

    :returns: ``(samples per chain, Pyro's MCMC run per chain, divergences, seconds)``.
    """
    import pyro
    from pyro.infer import MCMC, NUTS

    params = [p for p in zm.model.parameters() if p.requires_grad]
    was_training = zm.model.training
    zm.eval()
    chains: list[dict[str, torch.Tensor]] = []
    divergences = 0
    runs = []
    started = time.perf_counter()
    try:
        # The point estimates are constants of the target density: no gradient flows to them.
        for p in params:
            p.requires_grad_(False)
        for chain in range(num_chains):
            pyro.set_rng_seed(seed + chain)
            kernel = NUTS(
                zm.model,
                max_tree_depth=max_tree_depth,
                init_strategy=init,
                jit_compile=jit_compile,
                ignore_jit_warnings=jit_compile,
            )
            mcmc = MCMC(
                kernel, num_samples=num_samples, warmup_steps=warmup, disable_progbar=not progress
            )
            mcmc.run(x_all, y_all)
            chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
            divergences += sum(len(v) for v in mcmc.diagnostics()["divergences"].values())
            runs.append(mcmc)
    finally:
        for p in params:
            p.requires_grad_(True)
        zm.train(was_training)
    return chains, runs, divergences, time.perf_counter() - started
