"""The ``mixproc`` command line: ``mixproc demo`` fits every model on shipped data.

The demo steps are not listed here: each package registers its own under the entry-point
group ``mixproc.demos`` (in ``pyproject.toml``), as ``name = "module:function"`` with
``function(output_dir, verbose=1) -> dict[str, float]`` returning the step's metrics. This
module discovers them with :func:`importlib.metadata.entry_points`, so the common layer never
names the packages built on it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import pathlib
import sys
import time

__all__ = ["DEMO_GROUP", "main", "registered_demos"]

#: Entry-point group under which packages register their demo steps.
DEMO_GROUP = "mixproc.demos"
# The step of the common layer runs first; the others follow in alphabetical order.
_FIRST_STEP = "mixtures"


def registered_demos() -> dict[str, importlib.metadata.EntryPoint]:
    """The demo steps registered under :data:`DEMO_GROUP`, in the order ``mixproc demo`` runs.

    The common layer's step (``"mixtures"``) comes first, then the other steps sorted by
    name. Nothing is imported until a step is loaded.

    Returns
    -------
    dict of str to importlib.metadata.EntryPoint
        Step name to its entry point; empty when the package metadata records none.
    """
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=DEMO_GROUP):
        found.setdefault(entry_point.name, entry_point)  # a stale duplicate never wins
    order = sorted(found, key=lambda name: (name != _FIRST_STEP, name))
    return {name: found[name] for name in order}


def _select(
    demos: dict[str, importlib.metadata.EntryPoint], only: list[str] | None
) -> list[str] | None:
    """The step names to run, or None (after printing why) when the request cannot be met."""
    if not demos:
        print(
            f"No demo steps are registered under the entry-point group {DEMO_GROUP!r}: the "
            "installed package metadata is missing or outdated. Reinstall the package "
            "(pip install -e . or uv sync) and try again.",
            file=sys.stderr,
        )
        return None
    if not only:
        return list(demos)
    unknown = [name for name in only if name not in demos]
    if unknown:
        print(
            f"Unknown demo step(s): {', '.join(unknown)}. Available steps: {', '.join(demos)}.",
            file=sys.stderr,
        )
        return None
    return [name for name in demos if name in only]


def _run_demo(output: pathlib.Path, verbose: int, only: list[str] | None) -> int:
    demos = registered_demos()
    steps = _select(demos, only)
    if steps is None:
        return 2
    output.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for i, name in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {name}", flush=True)
        t0 = time.perf_counter()
        run = demos[name].load()
        results[name] = run(output, verbose=verbose)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in results[name].items())
        print(f"  metrics: {shown}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    (output / "metrics.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"Done in {time.perf_counter() - start:.1f} s; figures and metrics in {output}/")
    return 0


def _list_demos() -> int:
    demos = registered_demos()
    if _select(demos, None) is None:
        return 2
    for name, entry_point in demos.items():
        print(f"{name:20s} {entry_point.value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixproc`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="mixproc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit every model on shipped or generated data")
    demo.add_argument("--output", type=pathlib.Path, default=pathlib.Path("mixproc-demo"))
    demo.add_argument("--only", nargs="*", metavar="STEP", help="run only these steps")
    demo.add_argument("--list", action="store_true", help="list the registered steps and exit")
    demo.add_argument("--verbose", type=int, default=1, help="0 silences progress bars")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.list:
            return _list_demos()
        return _run_demo(args.output, args.verbose, args.only)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
