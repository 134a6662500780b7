"""Sphinx configuration of the adamnb documentation.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference under ``docs/api/`` is written from the package at every build
(``docs/_ext/api_pages.py``); the narrative pages are Markdown (MyST), the docstrings numpydoc.
"""

import os
import re
import sys
import warnings
from pathlib import Path

# The CUDA modules import numba.cuda; the simulator lets them load on machines without a GPU.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import adamnb  # noqa: E402  (after the environment is set)

project = "adamnb"
author = "adamnb developers"
copyright = "adamnb developers"
release = adamnb.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "api_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: $...$ math and ::: fences in the Markdown pages; headings get anchors for links.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# The API pages are written by api_pages; autosummary only draws their summary tables.
autosummary_generate = False
autodoc_default_options = {}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
# numpydoc: no per-class autosummary of methods (autodoc's :members: documents them), and the
# Parameters/Returns types are not cross-referenced (they are prose such as "array_like, shape
# (n,)", not importable names).
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = False

# Links into the documentation of the libraries the docstrings name. Offline builds (CI has no
# network) simply leave these as plain text: intersphinx failures are warnings only when the
# inventory was reachable, so they are switched off unless ADAMNB_DOCS_INTERSPHINX is set.
intersphinx_mapping = {}
if os.environ.get("ADAMNB_DOCS_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }

html_theme = "pydata_sphinx_theme"
html_title = f"adamnb {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path = []


# The method callables' docstrings (adamnb.adam, ...) end with the text of show_options, written
# for a terminal: an underlined heading and indented "name = default: meaning" lines. Shown as
# written, in a literal block under a bold heading, rather than parsed as reST (where the heading
# would be a numpydoc section it does not know and "x *= ..." would open an emphasis).
_OPTIONS_HEADING = re.compile(r"^Options for method '\w+'$")


def _options_as_literal_block(app, what, name, obj, options, lines):
    for index, line in enumerate(lines[:-1]):
        if _OPTIONS_HEADING.match(line) and set(lines[index + 1]) == {"-"}:
            body = ["    " + text if text else "" for text in lines[index + 2:]]
            lines[index:] = [f"**{line}**::", "", *body]
            return


# numpydoc also reads the raw docstrings (for signatures) and notes the heading as a section it
# does not know; the text is rendered in full by the hook above.
warnings.filterwarnings("ignore", message=r"Unknown section Options For Method",
                        category=UserWarning)


def setup(app):
    # Before numpydoc (priority 500) reads the sections.
    app.connect("autodoc-process-docstring", _options_as_literal_block, priority=400)
