"""Structured Bayesian Pruning entries: LeNets whose neurons and channels are pruned whole.

The net × prior × guide of :mod:`zoo.models.bnn` with :class:`zoo.structured.SBP` as prior
(noise per output unit, weights as point estimates) and :class:`guides.structured.SBPGuide`
(Neklyudov et al. 2017).  After training, a unit whose noise has SNR < 1 is pruned; the mean
net multiplies every kept unit by ``E[theta]`` and every pruned one by 0.  Folding ``E[theta]``
into the layer's weights and bias gives the *masked* plain net (:func:`folded_state_dict`, the
``zoo export`` of these entries), and removing the pruned units the *shrunk* one
(:func:`export_shrunk`, :func:`zoo.models.shrink.shrink`), smaller and faster, with the same
outputs.

Usage::

    from zoo import create_model, fit, load
    data = load("fashion-mnist")
    zm = create_model("lenet300-sbp", data=data)
    fit(zm, data, num_epochs=10)
    unit_report(zm)                    # units kept per layer, compression
    small = export_shrunk(zm)          # a plain nn.Sequential with fewer units
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
from torch import nn

from guides.structured import SBPGuide
from zoo.data import DataInfo
from zoo.models.bnn import BNN, HOOKS, BNNConfig, build_net
from zoo.models.plots import LazyPlot
from zoo.models.shrink import LAYERS, prunable_layers, shrink
from zoo.models.weights import weight_guide
from zoo.priors import Prior
from zoo.spec import ModelSpec, ZooModel
from zoo.structured import SBP, SBP_THRESHOLD
from zoo.util import local_params

__all__ = [
    "GUIDES",
    "SPECS",
    "STRUCTURED_HOOKS",
    "TOTAL",
    "SBPFields",
    "StructuredConfig",
    "export_shrunk",
    "folded_state_dict",
    "unit_masks",
    "unit_report",
]

REFERENCE = (
    "Neklyudov, Molchanov, Ashukha & Vetrov (2017), Structured Bayesian pruning via log-normal "
    "multiplicative noise, NeurIPS"
)
#: The label of :func:`unit_report`'s last row.
TOTAL = "total (Linear/ConvNd weights)"


@dataclass(frozen=True)
class SBPFields:
    """:class:`SBP`'s settings as configuration fields, so that a checkpoint records them: a
    mixin of :class:`StructuredConfig` and of a user's net's
    :class:`~zoo.models.custom.ModuleConfig`.

    :param sbp_low: ``a``, log of the noise's lower bound.
    :param sbp_high: ``b``, log of its upper bound.
    :param sbp_inputs: noise on the first ``Linear`` layer's inputs too (:class:`SBP`).
    """

    sbp_low: float = -20.0
    sbp_high: float = 0.0
    sbp_inputs: bool = False

    def sbp_prior(self) -> SBP:
        """The :class:`SBP` these fields describe."""
        return SBP(self.sbp_low, self.sbp_high, inputs=self.sbp_inputs)


@dataclass(frozen=True)  # SBPFields first: BNNConfig's fields stay in front (ModuleConfig)
class StructuredConfig(SBPFields, BNNConfig):
    """A LeNet with SBP noise (and :class:`~zoo.models.bnn.BNNConfig`'s and
    :class:`SBPFields`' fields; ``sbp_inputs`` is on by default, as in the paper).

    :param init_log_sigma: the guide's initial ``log sigma``.
    :param lr_scale: how much faster the guide's parameters move than the weights
        (:class:`guides.structured.SBPGuide`).
    """

    prior: str = "sbp"
    threshold: float = SBP_THRESHOLD
    sbp_inputs: bool = True
    init_log_sigma: float = -5.0
    lr_scale: float = 10.0

    PRIOR_CHOICES: ClassVar[tuple[str, ...]] = ("sbp",)

    def make_prior(self) -> Prior:
        return self.sbp_prior()


_SUFFIX = {"out": "unit_noise", "in": "input_noise"}


def _layer_name(site_name: str, net_prefix: str = "net.") -> str:
    name = site_name.removeprefix(net_prefix)
    for suffix in _SUFFIX.values():
        name = name.removesuffix(f".{suffix}").removesuffix(suffix)
    return name


def _split(values: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    suffix = _SUFFIX[where]
    return {_layer_name(k): v for k, v in values.items() if k.endswith(suffix)}


@local_params()
@torch.no_grad()
def unit_masks(
    zm: ZooModel, threshold: float | None = None, where: str = "out"
) -> dict[str, torch.Tensor]:
    """Layer name (in the plain net) -> bool tensor of the units kept (SNR >= 1): its output
    units (``where="out"``) or, for a ``Linear`` layer with input noise, its inputs (``"in"``)."""
    threshold = zm.config.threshold if threshold is None else threshold
    masks = weight_guide(zm).masks(threshold)
    return {k: v.cpu() for k, v in _split(masks, where).items()}


@local_params()
@torch.no_grad()
def folded_state_dict(zm: ZooModel, threshold: float | None = None) -> dict[str, torch.Tensor]:
    """The plain net's state dict with ``E[theta_i] * mask_i`` folded into unit ``i``'s weights
    and bias: the masked mean net (pruned units all zero)."""
    threshold = zm.config.threshold if threshold is None else threshold
    state = {k: v.detach().clone() for k, v in zm.model.net.state_dict().items()}
    means = weight_guide(zm).mean_weights(threshold)
    for layer, scale in _split(means, "out").items():
        weight = state[f"{layer}.weight"]
        state[f"{layer}.weight"] = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
        if f"{layer}.bias" in state:
            state[f"{layer}.bias"] = state[f"{layer}.bias"] * scale
    for layer, scale in _split(means, "in").items():
        state[f"{layer}.weight"] = state[f"{layer}.weight"] * scale  # (out, in) * (in,)
    return state


def masked_net(zm: ZooModel, threshold: float | None = None) -> nn.Module:
    """The masked mean net as a plain ``nn.Module`` (same shapes, pruned units zero)."""
    net = zm.model.plain_net().to(zm.device)
    net.load_state_dict(folded_state_dict(zm, threshold))
    return net.eval()


def export_shrunk(zm: ZooModel, threshold: float | None = None) -> nn.Module:
    """The trained net without its pruned units: a plain, smaller ``nn.Sequential`` whose outputs
    equal the masked mean net's (:func:`zoo.models.shrink.shrink`).

    :raises ValueError: when the architecture cannot be shrunk (the message names the layer).
    """
    masks, inputs = unit_masks(zm, threshold), unit_masks(zm, threshold, "in")
    return shrink(masked_net(zm, threshold), masks, inputs)


def _row(layer: str, type_: str, units: str, weights: int, kept: int) -> dict:
    return {
        "layer": layer,
        "type": type_,
        "units_kept": units,
        "weights": weights,
        "kept": kept,
        "sparsity_%": 100.0 * (1 - kept / weights),
        "compression": weights / kept if kept else float("inf"),
    }


@local_params()
@torch.no_grad()
def unit_report(zm: ZooModel, threshold: float | None = None) -> pd.DataFrame:
    """Per ``Linear``/``ConvNd`` layer: units kept, weights before and after shrinking.

    ``kept`` counts the shrunk net's weights (inputs removed too); the last row, :data:`TOTAL`,
    gives ``compression = |W| / |W shrunk|``, the number :func:`zoo.models.bnn.metrics` reports.
    A net that :func:`export_shrunk` refuses counts only the rows of pruned units.
    """
    masks, inputs = unit_masks(zm, threshold), unit_masks(zm, threshold, "in")
    plain = masked_net(zm, threshold)
    try:
        big = prunable_layers(plain)
        small = prunable_layers(shrink(plain, masks, inputs))
        kept = {n: s.weight.numel() for (n, _), (_, s) in zip(big, small, strict=True)}
    except ValueError:  # not shrinkable: the rows of the pruned units only
        big = [(n, m) for n, m in plain.named_modules() if isinstance(m, LAYERS)]
        kept = {
            n: m.weight.numel() * int(masks[n].sum()) // masks[n].numel()
            if n in masks
            else m.weight.numel()
            for n, m in big
        }
    rows = []
    for name, layer in big:
        mask = masks.get(name)
        units = f"{int(mask.sum())}/{mask.numel()}" if mask is not None else "all"
        if name in inputs:
            units = f"inputs {int(inputs[name].sum())}/{inputs[name].numel()}, outputs {units}"
        rows.append(_row(name, type(layer).__name__, units, layer.weight.numel(), kept[name]))
    weights, kept = sum(r["weights"] for r in rows), sum(r["kept"] for r in rows)
    return pd.DataFrame([*rows, _row(TOTAL, "", "", weights, kept)])


#: The hooks of :mod:`zoo.models.bnn`, with the unit report, the folded (masked) export and
#: the SNR plot.
STRUCTURED_HOOKS = dataclasses.replace(
    HOOKS,
    report=unit_report,
    export=folded_state_dict,
    plot=LazyPlot("zoo.models.plots.structured"),
)


def _sbp_guide(config: object, model: nn.Module) -> SBPGuide:
    # a user's net (ModuleConfig) has neither field: the registry entries' defaults
    defaults = StructuredConfig()
    return SBPGuide(
        model,
        init_log_sigma=getattr(config, "init_log_sigma", defaults.init_log_sigma),
        lr_scale=getattr(config, "lr_scale", defaults.lr_scale),
    )


#: The guide of an SBP net, by name.
GUIDES = {"sbp": lambda c, info, m: _sbp_guide(c, m)}


def _build(config: StructuredConfig, info: DataInfo) -> BNN:
    return BNN(functools.partial(build_net, config, info), config.make_prior(), info)


def _spec(name: str, description: str, config: StructuredConfig, train: dict) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="structured",
        description=description,
        config=config,
        build_model=_build,
        guides=GUIDES,
        default_guide="sbp",
        elbo="meanfield",
        dataset="fashion-mnist",
        train_defaults=train,
        reference=REFERENCE,
        hooks=STRUCTURED_HOOKS,
    )


#: Adam at 1e-3, batch 100, the KL switched on linearly over the first 5 epochs (a short
#: schedule: the paper fine-tunes pretrained nets for a few epochs).
_RECIPE = {"num_epochs": 30, "batch_size": 100, "lr": 1e-3, "kl_warmup_end": 5}

#: The family's registry entries, collected by :mod:`zoo.registry`.
SPECS = (
    _spec(
        "lenet300-sbp",
        "LeNet-300-100 classifier, SBP noise per neuron (structured pruning)",
        StructuredConfig(hidden=(300, 100)),
        _RECIPE,
    ),
    _spec(
        "lenet5-sbp",
        "LeNet-5-Caffe conv classifier, SBP noise per channel and neuron (structured pruning)",
        StructuredConfig(arch="lenet5"),
        _RECIPE,
    ),
)
