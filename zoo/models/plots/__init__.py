"""The model families' figures, one module per family, kept apart from the math.

:mod:`zoo.models.plots.ppca`, :mod:`~zoo.models.plots.vae`, :mod:`~zoo.models.plots.bnn` and
:mod:`~zoo.models.plots.attention` each hold the ``plot`` function of the family of the same name
in :mod:`zoo.models`; its registry entries reach it through ``spec.hooks.plot``, a
:class:`LazyPlot`.  A plot module imports its family, never the reverse at import time, so
importing a model never imports the plots, and matplotlib is imported only when a figure is
drawn (:func:`agg_pyplot`).

Usage::

    from zoo.models.plots.bnn import plot
    plot(zm, data, "runs/lenet300")            # what zm.spec.hooks.plot(zm, data, ...) runs
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from zoo.data import Dataset
from zoo.spec import ZooModel

__all__ = ["LazyPlot", "agg_pyplot", "shown_split"]


@dataclass(frozen=True)
class LazyPlot:
    """A family's ``plot`` hook: ``module.plot(zm, data, out_dir, **kwargs)``, with ``module``
    imported at the first call.

    Why late: the plot module imports its family (a cycle if the family imported it at the
    top), and importing a family's math should not import matplotlib.

    :param module: the dotted name of a plot module, such as ``"zoo.models.plots.ppca"``.
    """

    module: str

    def __call__(
        self, zm: ZooModel, data: Dataset, out_dir: str | Path, **kwargs: Any
    ) -> list[Path]:
        return importlib.import_module(self.module).plot(zm, data, out_dir, **kwargs)


def agg_pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend: figures go to files only, and
    plotting works without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shown_split(data: Dataset) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """The split a figure shows, ``(name, x, y)``: the test split, or the training split when
    the test split is empty."""
    if data.num_test:
        return "test", data.x_test, data.y_test
    return "train", data.x_train, data.y_train
