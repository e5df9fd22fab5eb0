"""What every notebook builder shares: collect markdown and code cells, write the notebook.

A builder does ``from _cells import code, md, write``, adds its cells in order and ends with
``write("name.ipynb")``; then ``python notebooks/_build/execute.py notebooks/name.ipynb``
stores the outputs.
"""

import pathlib

import nbformat as nbf

CELLS = []
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def md(text):
    CELLS.append(nbf.v4.new_markdown_cell(text.strip()))


def code(text):
    CELLS.append(nbf.v4.new_code_cell(text.strip()))


def write(name):
    nb = nbf.v4.new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = KERNELSPEC
    out = pathlib.Path(__file__).resolve().parents[1] / name
    nbf.write(nb, out)
    print("wrote", out)
