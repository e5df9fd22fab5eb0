"""Execute notebooks in place so their outputs are stored: python execute.py NB [NB ...]."""

import sys

import nbformat
from nbclient import NotebookClient

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": "."}}
    )
    client.execute()
    nbformat.write(nb, path)
    print("executed", path)
