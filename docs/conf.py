"""Sphinx configuration of the zoo's docs site (Pyro's convention: autodoc over reST docstrings).

Build it, warnings as errors, as ``.ci/run`` does::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the zoo and guides packages, installed or not

project = "pyro-bdl-zoo"
author = "the pyro-bdl-zoo authors"
copyright = "the pyro-bdl-zoo authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

# The docstrings are reST with :param: fields.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = False
# One page per module, generated from the module lists of api.rst. The template ignores
# ``__all__``: a module's page documents what the module defines, so that a package that
# re-exports its submodules' names (zoo, zoo.train, zoo.compare, ...) shows its overview and
# each object is described once, on the page of the module that defines it.
autosummary_generate = True
# A name exported by a package and documented in its module too (zoo.fit and zoo.train.fit)
# makes Python cross-references ambiguous; autodoc resolves them to either page.
suppress_warnings = ["ref.python"]

# MyST: `[text](page.md#a-heading)` links to headings down to level 3.
myst_heading_anchors = 3

html_theme = "furo"
html_title = "pyro-bdl-zoo"
