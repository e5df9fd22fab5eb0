"""The documentation site builds with warnings as errors (what ``make docs`` runs)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    html = tmp_path / "html"
    pages = (
        "index.html",
        "api.html",
        "getting-started.html",
        "tutorials/mixtures_quickstart.html",
        "generated/mixtures.GaussianMixtureModel.html",
    )
    for page in pages:
        assert (html / page).exists(), page
    api = (html / "generated" / "gmm.SemiSupervisedGMM.html").read_text()
    assert "split_merge" in api and "Hastings" in api
