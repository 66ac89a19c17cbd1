"""Pieces every model family shares: the data plate and the input check.

Every model's ``forward(x, y=None, num_data=None)`` receives one minibatch ``x`` drawn by the
trainer from device-resident tensors, and ``num_data``, the size of the whole training set.
The observed site sits in :func:`data_plate`, so its log-likelihood is scaled by ``N / B``:

    ELBO = (N / B) * sum_{i in batch} E_q[log p(x_i | ...)] - beta * KL(q || p)

which is the convention of Kingma & Welling (2014) and Molchanov et al. (2017).  The same
plate in the guide scales local latent sites identically.
"""

from __future__ import annotations

import pyro
import torch


def data_plate(x: torch.Tensor, num_data: int | None = None, name: str = "data") -> pyro.plate:
    """A plate over the minibatch ``x`` that stands for ``num_data`` examples.

    The trainer picks the minibatch itself (each rank its own, under distributed training), so
    the plate is told the indices rather than drawing them: ``subsample`` is ``arange(B)`` and
    only its length matters, giving the scale ``num_data / B``.
    """
    batch = x.shape[0]
    if num_data is None or num_data == batch:
        return pyro.plate(name, batch, dim=-1)
    if num_data < batch:
        raise ValueError(f"num_data={num_data} is smaller than the minibatch size {batch}")
    return pyro.plate(name, int(num_data), subsample=torch.arange(batch, device=x.device), dim=-1)


def check_input(x: torch.Tensor, input_shape: tuple[int, ...], model: str) -> None:
    """Raise a clear ``ValueError`` when ``x`` is not a batch of ``input_shape`` examples."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model}: x must be a tensor, got {type(x).__name__}")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{model}: expected inputs of shape (batch, {', '.join(map(str, input_shape))}), "
            f"got {tuple(x.shape)}"
        )
