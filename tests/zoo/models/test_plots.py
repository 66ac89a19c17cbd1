"""The families' figures live beside the math (:mod:`zoo.models.plots`), reached lazily."""

import importlib
import subprocess
import sys

import pytest

from zoo import get_spec, list_models
from zoo.models import FAMILIES
from zoo.models.plots import LazyPlot


@pytest.mark.parametrize("name", list_models())
def test_every_plot_hook_names_the_plot_module_of_its_family(name):
    spec = get_spec(name)
    assert spec.hooks.plot == LazyPlot(f"zoo.models.plots.{spec.family}")
    assert callable(importlib.import_module(spec.hooks.plot.module).plot)


def test_importing_the_models_imports_neither_the_plots_nor_matplotlib():
    plots = [f"zoo.models.plots.{family.__name__.rsplit('.', 1)[1]}" for family in FAMILIES]
    code = (
        "import sys\n"
        "from zoo import create_model\n"
        "create_model('ppca')\n"
        f"loaded = [m for m in {[*plots, 'matplotlib']!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
