"""The ``mixproc`` command line: ``mixproc demo`` fits every model on shipped data."""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time

__all__ = ["DEMO_STEPS", "main"]

# (name, "module:function"); each function is run_demo(output_dir, verbose) -> metrics
DEMO_STEPS: list[tuple[str, str]] = [
    ("mixtures", "mixtures._demo:run_demo"),
    ("gp", "gp._demo_gp:run_demo"),
    ("category_discovery", "gmm._demo_gcd:run_demo"),
    ("forecasting", "gmm._demo_forecasting:run_demo"),
    ("bvpo", "mixtures.estimators._demo_bvpo:run_demo"),
    ("pmoe", "mixtures.rl._demo_pmoe:run_demo"),
]


def _run_demo(output: pathlib.Path, verbose: int, only: list[str] | None) -> int:
    output.mkdir(parents=True, exist_ok=True)
    steps = [s for s in DEMO_STEPS if not only or s[0] in only]
    if not steps:
        names = ", ".join(name for name, _ in DEMO_STEPS)
        print(f"No demo step matches {only}; available steps: {names}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for i, (name, target) in enumerate(steps, 1):
        module_name, func_name = target.split(":")
        print(f"[{i}/{len(steps)}] {name}", flush=True)
        t0 = time.perf_counter()
        run = getattr(importlib.import_module(module_name), func_name)
        results[name] = run(output, verbose=verbose)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in results[name].items())
        print(f"  metrics: {shown}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    (output / "metrics.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"Done in {time.perf_counter() - start:.1f} s; figures and metrics in {output}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixproc`` console script."""
    parser = argparse.ArgumentParser(prog="mixproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit every model on shipped or generated data")
    demo.add_argument("--output", type=pathlib.Path, default=pathlib.Path("mixproc-demo"))
    demo.add_argument("--only", nargs="*", help="run only these steps")
    demo.add_argument("--verbose", type=int, default=1, help="0 silences progress bars")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _run_demo(args.output, args.verbose, args.only)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
