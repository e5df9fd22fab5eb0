"""Execute notebooks in place so their outputs are stored: python execute.py NB [NB ...].

``--coalesce-only`` merges consecutive outputs of one stream (several ``print``
calls in a cell) into one block without executing, so the rendered page shows one
output box per cell, as Jupyter does.
"""

import sys

import nbformat
from nbclient import NotebookClient


def coalesce_streams(nb):
    """Merge consecutive stdout (or stderr) outputs of each code cell into one."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if (
                merged
                and out.output_type == "stream"
                and merged[-1].output_type == "stream"
                and merged[-1].name == out.name
            ):
                merged[-1].text = merged[-1].text + out.text
            else:
                merged.append(out)
        cell.outputs = merged
    return nb


args = sys.argv[1:]
execute = "--coalesce-only" not in args
for path in (a for a in args if not a.startswith("--")):
    nb = nbformat.read(path, as_version=4)
    if execute:
        client = NotebookClient(
            nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": "."}}
        )
        client.execute()
    nbformat.write(coalesce_streams(nb), path)
    print("executed" if execute else "coalesced", path)
