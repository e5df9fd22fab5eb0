"""Every Python example in README.md runs as written, each in a fresh interpreter."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


# The README's examples must not trigger mixproc's own reliability warnings. (``python -W
# error::module.Class`` cannot be used: it is parsed before the module can be imported,
# and is then ignored with "invalid module name".)
_STRICT = (
    "import warnings\n"
    "from gp.diagnostics import ImportanceSamplingWarning\n"
    "from mixtures.diagnostics import MixprocConvergenceWarning\n"
    "warnings.simplefilter('error', ImportanceSamplingWarning)\n"
    "warnings.simplefilter('error', MixprocConvergenceWarning)\n"
)


def test_strict_preamble_turns_the_warnings_into_errors():
    code = "import warnings\nfrom gp import ImportanceSamplingWarning\n"
    code += "warnings.warn('x', ImportanceSamplingWarning)\n"
    res = subprocess.run([sys.executable, "-c", _STRICT + code], capture_output=True, text=True)
    assert res.returncode != 0 and "ImportanceSamplingWarning" in res.stderr


def test_readme_has_examples():
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("code", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", _STRICT + code],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
