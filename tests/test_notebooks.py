"""The committed notebooks are tutorials a user reads rendered: executed, self-contained,
and free of warnings, hidden warnings and this machine's paths.

(``make test`` also executes every notebook with nbmake; this checks what is committed.)
"""

import pathlib
import re

import nbformat
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# a path of the machine that executed the notebook, or data that users do not have
_MACHINE = re.compile(r"/work/|/home/|/tmp/|/Users/|site-packages|shared/data|\.\./shared")
# silencing warnings instead of fixing their cause
_SILENCED = re.compile(r"filterwarnings\(\s*['\"]ignore|simplefilter\(\s*['\"]ignore")
# lab-report wording that refers to documents users do not have
_INTERNAL = re.compile(r"\bthe note\b|\bdiagnosis \d|\bnote section\b", re.IGNORECASE)


def _outputs_text(cell) -> list[tuple[str, str]]:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append((o["name"], o["text"]))
        elif o["output_type"] == "error":
            out.append(("error", f"{o['ename']}: {o['evalue']}"))
        else:
            out.append(("data", str(o.get("data", {}).get("text/plain", ""))))
    return out


def test_there_is_a_notebook_per_model():
    names = {p.stem for p in NOTEBOOKS}
    assert {"mixtures_quickstart", "scale_mixture_nngp", "category_discovery"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_executed_clean_and_self_contained(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert all(counts), f"{path.name}: cells without outputs; run `make notebooks`"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    problems = []
    for i, cell in enumerate(nb.cells):
        if _MACHINE.search(cell.source):
            problems.append(f"cell {i} source names a local path or unshipped data")
        if _SILENCED.search(cell.source):
            problems.append(f"cell {i} silences warnings")
        if cell.cell_type == "markdown" and _INTERNAL.search(cell.source):
            problems.append(f"cell {i} refers to an internal document")
        for kind, text in _outputs_text(cell):
            if kind == "error":
                problems.append(f"cell {i} raised {text[:200]}")
            if kind == "stderr" and re.search(r"Warning|WARNING", text):
                problems.append(f"cell {i} shows a warning: {text[:200]!r}")
            if _MACHINE.search(text):
                problems.append(f"cell {i} output shows a local path: {text[:200]!r}")
        outs = cell.get("outputs", [])
        for a, b in zip(outs, outs[1:]):
            if a.output_type == b.output_type == "stream" and a.name == b.name:
                problems.append(f"cell {i}: one print per output box (run `make notebooks`)")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
