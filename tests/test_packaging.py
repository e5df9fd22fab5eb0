"""The wheel, installed into a clean virtual environment, works without TensorFlow.

Two installs from the built wheel, each into a fresh venv:

- the newest versions the metadata allows, as ``pip install mixproc`` does;
- every dependency pinned to the lower bound ``pyproject.toml`` declares, so the lower
  bounds are tested, not guessed.

Both then install neural-tangents without its dependencies (its last release requires
TensorFlow, which ``gp`` never uses; see the README) and run a smoke fit of each package.
The installs use uv (the same resolution from the same wheel metadata as pip, from uv's
cache when it has the files).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SMOKE = textwrap.dedent(
    """
    import importlib.metadata as md
    import numpy as np
    from sklearn.datasets import load_iris
    import gmm, gp, mixtures
    X = load_iris().data
    m = mixtures.GaussianMixtureModel(3, random_state=0).fit(X)
    assert m.converged_ and np.isfinite(m.score(X))
    r = gp.ScaleMixtureNNGPRegressor(random_state=0).fit(X[:, :3], X[:, 3])
    assert r.score(X[:, :3], X[:, 3]) > 0.8
    s = gmm.SemiSupervisedGMM(3, split_merge=False, random_state=0).fit(X)
    assert s.n_components_ == 3
    names = {d.metadata["Name"].lower() for d in md.distributions()}
    assert not names & {"tensorflow", "tf2jax", "keras"}, sorted(names)
    try:
        import mixtures.rl  # gymnasium is the rl extra, not installed here
    except ImportError as err:
        assert "mixproc[rl]" in str(err), err
    else:
        raise AssertionError("mixtures.rl imported without gymnasium")
    print("OK", *(md.version(p) for p in ("jax", "numpy", "scikit-learn", "numpyro")))
    """
)


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH; `make test` installs it (python3 -m pip install uv).")
    return uv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (whl,) = out.glob("mixproc-*.whl")
    return whl


def _install_and_smoke(tmp_path, wheel, *resolution):
    uv = _uv()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    venv = tmp_path / "venv"
    run = dict(check=True, capture_output=True, text=True, timeout=900, env=env)
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], **run)
    py = str(venv / "bin" / "python")
    subprocess.run([uv, "pip", "install", "--python", py, *resolution, str(wheel)], **run)
    subprocess.run(
        [uv, "pip", "install", "--python", py, "--no-deps", "neural-tangents==0.6.5"], **run
    )
    res = subprocess.run([py, "-c", SMOKE], **{**run, "check": False}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_wheel_installs_without_tensorflow_and_every_package_works(tmp_path, wheel):
    assert _install_and_smoke(tmp_path, wheel).startswith("OK")


def _lower_bounds() -> list[str]:
    """``name==lower`` for every dependency of pyproject.toml with a ``>=`` bound."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for req in project["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)", req)
        if m:
            pins.append(f"{m[1]}=={m[2]}")
    return pins


def test_lowest_declared_versions_work(tmp_path, wheel):
    pins = _lower_bounds()
    assert {"scikit-learn==1.6", "numpy==2.0", "jax==0.10"} <= set(pins), pins
    out = _install_and_smoke(tmp_path, wheel, *pins)
    # the declared lower bounds themselves were installed (0.10 == 0.10.0 and so on)
    got = dict(zip(("jax", "numpy", "scikit-learn", "numpyro"), out.split()[1:]))
    for pin in pins:
        name, version = pin.split("==")
        if name in got:
            assert got[name].split(".")[:2] == version.split(".")[:2], (pin, got[name])
