"""Sphinx configuration of the mixproc documentation (``make docs``)."""

from __future__ import annotations

import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parents[1]

project = "mixproc"
author = "The mixproc developers"
copyright = "2026, The mixproc developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
]

# The tutorials are the executed notebooks of notebooks/, copied here at build time and
# rendered with their stored outputs (make test re-executes them).
TUTORIALS = pathlib.Path(__file__).parent / "tutorials"
TUTORIALS.mkdir(exist_ok=True)
for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copy2(nb, TUTORIALS / nb.name)
nb_execution_mode = "off"

exclude_patterns = ["_build", "development-notes.md", "**/.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
myst_enable_extensions = ["dollarmath", "amsmath"]

templates_path = ["_templates"]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
# methods without a docstring of their own stay undocumented (no third-party docstrings)
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "pydata_sphinx_theme"
html_title = "mixproc"
html_static_path = ["_static"]
html_css_files = ["mixproc.css"]
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters (set_*_request)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
