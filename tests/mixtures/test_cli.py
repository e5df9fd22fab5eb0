"""The ``mixproc`` command line: the entry-point registry of demo steps and its errors.

The demos themselves are slow and are not run here; a fake step exercises the run path.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import pathlib

from mixtures import cli

EXPECTED = {
    "mixtures": "mixtures._demo:run_demo",
    "gp": "gp._demo_gp:run_demo",
    "category_discovery": "gmm._demo_gcd:run_demo",
    "forecasting": "gmm._demo_forecasting:run_demo",
    "bvpo": "mixtures.gradmix._demo_bvpo:run_demo",
    "pmoe": "mixtures.rl._demo_pmoe:run_demo",
}


def test_registry_lists_the_six_steps_foundation_first():
    demos = cli.registered_demos()
    assert {name: ep.value for name, ep in demos.items()} == EXPECTED
    # the common layer first, then the rest in alphabetical order
    names = list(demos)
    assert names[0] == "mixtures"
    assert names[1:] == sorted(names[1:])


def test_every_registered_step_loads_with_the_demo_signature():
    for name, entry_point in cli.registered_demos().items():
        run = entry_point.load()
        params = list(inspect.signature(run).parameters)
        assert params[:2] == ["output_dir", "verbose"], (name, params)


def test_unknown_step_exits_2_and_lists_the_available_steps(capsys, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["demo", "--only", "mixtures", "nope", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope" in err
    for name in EXPECTED:
        assert name in err
    assert not out.exists()  # nothing ran


def test_no_registered_step_says_to_reinstall(monkeypatch, capsys):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    assert cli.registered_demos() == {}
    assert cli.main(["demo"]) == 2
    assert "Reinstall the package" in capsys.readouterr().err
    assert cli.main(["demo", "--list"]) == 2


class _FakeEntryPoint:
    def __init__(self, value: str, run):
        self.value = value
        self._run = run

    def load(self):
        return self._run


def test_only_runs_the_selected_steps_and_writes_metrics(monkeypatch, tmp_path, capsys):
    calls = []

    def make(name):
        def run(output_dir, verbose=1):
            calls.append((name, pathlib.Path(output_dir), verbose))
            return {"score": 1.5}

        return _FakeEntryPoint(f"fake:{name}", run)

    fake = {"mixtures": make("mixtures"), "alpha": make("alpha"), "beta": make("beta")}
    monkeypatch.setattr(cli, "registered_demos", lambda: fake)
    argv = ["demo", "--only", "beta", "mixtures", "--output", str(tmp_path), "--verbose", "0"]
    assert cli.main(argv) == 0
    # registry order, not command-line order
    assert calls == [("mixtures", tmp_path, 0), ("beta", tmp_path, 0)]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"mixtures": {"score": 1.5}, "beta": {"score": 1.5}}
    assert "[2/2] beta" in capsys.readouterr().out


def test_list_prints_every_step(capsys):
    assert cli.main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    for name, target in EXPECTED.items():
        assert name in out and target in out


def test_cli_source_does_not_name_the_packages_built_on_it():
    source = pathlib.Path(cli.__file__).read_text()
    for needle in ("gp.", "gmm.", "import_module"):
        assert needle not in source, needle
