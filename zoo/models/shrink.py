"""Remove pruned neurons and channels from a network: a smaller plain ``nn.Module``, same outputs.

Structured pruning (:mod:`zoo.structured`) switches off whole output units of ``Linear`` and
``Conv1d/2d/3d`` layers.  A *masked* net keeps every unit and zeroes the pruned ones' weights
and biases (:func:`mask_units`); :func:`shrink` builds the *shrunk* net instead: the pruned
rows of each layer are removed, and so are the matching input columns (or input channels) of
the next ``Linear``/``ConvNd`` layer.  Through a ``Flatten`` between a convolution and a
``Linear`` layer, channel ``c`` of a ``C x H x W`` map is the ``H*W`` inputs ``c*H*W ...
(c+1)*H*W - 1``, which are removed together.  The two nets give the same outputs (up to
float rounding), and the shrunk one is faster because its matrices are smaller, not sparse.

Removing a unit is exact only when what lies between two layers maps a zero unit to a zero
unit, unit by unit: element-wise activations with ``f(0) = 0`` (``ReLU``, ``Tanh``, ``GELU``,
...), pooling, dropout, ``Identity`` and ``Flatten``.  Anything else after a pruned layer (a
``BatchNorm``, a ``Sigmoid``, an unknown module, a residual block with its own ``forward``)
is refused with a ``ValueError`` that names it.  The net's last ``Linear``/``ConvNd`` layer
keeps all its outputs (the classes): a pruned output there is zeroed, not removed.

Usage::

    net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    small = shrink(net, {"0": keep})           # keep: bool tensor of the 300 units
    small[0].out_features == int(keep.sum())   # True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["LAYERS", "PASS_THROUGH", "KeepFeatures", "mask_units", "prunable_layers", "shrink"]

#: The layer types whose output units can be removed.
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Modules that map a zero unit (neuron or channel) to a zero unit, unit by unit.
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Tanh,
    nn.Softsign,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def _leaves(net: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The modules of a (nested) ``nn.Sequential`` in the order its ``forward`` runs them."""
    if not isinstance(net, nn.Sequential):
        raise ValueError(
            f"shrink needs an nn.Sequential (nested ones too), whose forward runs its layers in "
            f"order; {prefix or 'the net'} is a {type(net).__name__} with its own forward (a "
            "residual connection or any other wiring cannot be shrunk)"
        )
    out = []
    for name, child in net.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            out += _leaves(child, qualified)
        else:
            out.append((qualified, child))
    return out


def prunable_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``Linear``/``ConvNd`` layers of a (nested) ``nn.Sequential`` ``net``, in order."""
    return [(n, m) for n, m in _leaves(net) if isinstance(m, LAYERS)]


class KeepFeatures(nn.Module):
    """``x[..., index]``: the input features a shrunk ``Linear`` layer still reads."""

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(-1, self.index)


def _check_masks(net: nn.Module, masks: dict[str, torch.Tensor], dim: int = 0) -> None:
    layers = dict(prunable_layers(net))
    what = "output units" if dim == 0 else "input features"
    for name, mask in masks.items():
        if name not in layers:
            raise ValueError(f"no Linear/ConvNd layer {name!r} in the net; it has {sorted(layers)}")
        if dim == 1 and not isinstance(layers[name], nn.Linear):
            raise ValueError(f"input masks are for Linear layers; {name!r} is not one")
        units = layers[name].weight.shape[dim]
        if mask.dtype != torch.bool or tuple(mask.shape) != (units,):
            raise ValueError(
                f"the mask of layer {name!r} must be a bool tensor of its {units} {what}, "
                f"got {mask.dtype} of shape {tuple(mask.shape)}"
            )


@torch.no_grad()
def mask_units(
    net: nn.Module,
    masks: dict[str, torch.Tensor],
    input_masks: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A copy of ``net`` whose pruned units have zero weights and biases (same shapes).

    :param masks: qualified layer name -> bool tensor, ``True`` for the output units kept.
    :param input_masks: ``Linear`` layer name -> bool tensor, ``True`` for the input features
        kept (the others' weight columns are zeroed).
    """
    input_masks = input_masks or {}
    _check_masks(net, masks)
    _check_masks(net, input_masks, dim=1)
    out = copy.deepcopy(net)
    layers = dict(prunable_layers(out))
    for name, mask in masks.items():
        layer = layers[name]
        layer.weight[~mask.to(layer.weight.device)] = 0.0
        if layer.bias is not None:
            layer.bias[~mask.to(layer.bias.device)] = 0.0
    for name, mask in input_masks.items():
        layers[name].weight[:, ~mask.to(layers[name].weight.device)] = 0.0
    return out.eval()


def _slice(layer: nn.Module, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Module:
    """A copy of ``layer`` with the output units ``rows`` and the input units ``cols`` kept."""
    new = copy.deepcopy(layer)
    weight, bias = layer.weight, layer.bias
    if cols is not None:
        weight = weight[:, cols.to(weight.device)]
    if rows is not None:
        weight = weight[rows.to(weight.device)]
        bias = None if bias is None else bias[rows.to(bias.device)]
    new.weight = nn.Parameter(weight.clone())
    if bias is not None:
        new.bias = nn.Parameter(bias.clone())
    if isinstance(new, nn.Linear):
        new.out_features, new.in_features = weight.shape
    else:
        new.out_channels, new.in_channels = weight.shape[0], weight.shape[1] * new.groups
    return new


def _input_keep(name: str, layer: nn.Module, keep: torch.Tensor, flattened: bool) -> torch.Tensor:
    """The input units of ``layer`` kept, from the units kept upstream."""
    inputs = layer.weight.shape[1]
    if isinstance(layer, nn.Linear) and flattened:
        if inputs % keep.numel():
            raise ValueError(
                f"layer {name!r} takes {inputs} inputs after a Flatten of {keep.numel()} "
                "channels, not a whole number of features per channel"
            )
        keep = keep.repeat_interleave(inputs // keep.numel())
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(f"layer {name!r} is a grouped convolution, whose inputs cannot be removed")
    if keep.numel() != inputs:
        raise ValueError(f"layer {name!r} takes {inputs} inputs but {keep.numel()} arrive")
    return keep


def _select_inputs(
    layer: nn.Module, cols: torch.Tensor | None, mask: torch.Tensor
) -> tuple[nn.Module, torch.Tensor]:
    """The :class:`KeepFeatures` that picks, among the features arriving (``cols`` of the
    layer's inputs, all when ``None``), those ``mask`` keeps; and the columns kept."""
    mask = mask.to(layer.weight.device)
    arriving = torch.ones_like(mask) if cols is None else cols.to(mask.device)
    index = torch.nonzero(mask[arriving]).flatten()
    return KeepFeatures(index), arriving & mask


@torch.no_grad()
def shrink(
    net: nn.Module,
    masks: dict[str, torch.Tensor],
    input_masks: dict[str, torch.Tensor] | None = None,
) -> nn.Sequential:
    """A smaller copy of ``net`` without the pruned units, as a flat ``nn.Sequential``.

    Its outputs equal :func:`mask_units`'s (``tests/zoo/models/test_shrink.py``: to 1e-5).
    A ``Linear`` layer with an input mask reads its kept features through a
    :class:`KeepFeatures` (an index) placed before it.

    :param net: a plain (nested) ``nn.Sequential`` of ``Linear``/``ConvNd`` layers and the
        modules of :data:`PASS_THROUGH` and ``Flatten`` between them.
    :param masks: qualified layer name -> bool tensor, ``True`` for the output units kept.
    :param input_masks: ``Linear`` layer name -> bool tensor, ``True`` for the inputs kept.
    :raises ValueError: naming the module when ``net`` is not a ``Sequential``, a mask does not
        fit its layer, or a module after a pruned layer cannot pass the pruning on.
    """
    input_masks = input_masks or {}
    _check_masks(net, masks)
    _check_masks(net, input_masks, dim=1)
    leaves = _leaves(net)
    last = max((i for i, (_, m) in enumerate(leaves) if isinstance(m, LAYERS)), default=-1)
    keep: torch.Tensor | None = None  # units kept of the current activation, None: all
    flattened = False
    modules: list[nn.Module] = []
    for i, (name, module) in enumerate(leaves):
        if isinstance(module, LAYERS):
            cols = None if keep is None else _input_keep(name, module, keep, flattened)
            if name in input_masks:
                select, both = _select_inputs(module, cols, input_masks[name])
                if select.index.numel() < (module.in_features if cols is None else int(cols.sum())):
                    modules.append(select)  # an index that keeps everything costs time for nothing
                cols = both
            mask = masks.get(name)
            if i == last and mask is not None:  # the net's outputs: zeroed, never removed
                module = mask_units(nn.Sequential(module), {"0": mask})[0]
                mask = None
            modules.append(_slice(module, mask, cols))
            keep, flattened = mask, False
        elif keep is None:
            modules.append(copy.deepcopy(module))
        elif isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            modules.append(copy.deepcopy(module))
            flattened = True
        elif isinstance(module, PASS_THROUGH):
            modules.append(copy.deepcopy(module))
        else:
            raise ValueError(
                f"cannot shrink through {name!r} ({type(module).__name__}) after a pruned layer: "
                "only element-wise activations with f(0) = 0, pooling, dropout, Identity and "
                "Flatten(1, -1) map a removed unit to a removed unit"
            )
    return nn.Sequential(*modules).eval()
