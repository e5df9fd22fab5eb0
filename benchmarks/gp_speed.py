"""Fit + predict time of ScaleMixtureNNGPRegressor vs nt.predict.gradient_descent_mse_ensemble.

Same kernel (depth-2 ReLU MLP NNGP, W_std 1.5, b_std 0.05), same data (n training points
in 8 dimensions, n/4 test points), side by side; also the Student-t (inverse-gamma)
posterior vs the Gaussian (constant prior) one. Both sides are float64; each time is the
best of ``--repeat`` runs after one untimed warm-up run (which compiles).

Ours: fit + ``predict(return_std=True)``. On the CPU the training kernel is computed from
its lower-triangular ~512-row tiles into one (n, n) array that the LAPACK Cholesky factor
then overwrites in place (``gp._linalg``); on an accelerator (JAX picks it) everything
runs through the jitted JAX path on the device. neural-tangents:
``gradient_descent_mse_ensemble(kernel_fn, X, y, diag_reg=1e-3)`` then
``predict(None, X_test, "nngp", compute_cov=True)`` (it has no variance-only mode).

Usage::

    python benchmarks/gp_speed.py [--quick] [--n 1000 4000 8000] [--repeat 2] [--json out.json]
    python benchmarks/gp_speed.py --merge a.json b.json          # print tables of saved runs
    /usr/bin/time -v python benchmarks/gp_speed.py --ours-only --n 20000   # peak memory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from gp import Constant, InverseGamma, ScaleMixtureNNGPRegressor
from gp._neural_tangents import nt
from gp.kernels import build_network
from mixtures.base import x64_scope


def _time(fn, repeat):
    fn()  # warm-up: compiles
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _data(n, seed=0):
    rs = np.random.RandomState(seed)
    X = rs.randn(n, 8)
    y = np.sin(X[:, 0]) + 0.1 * rs.randn(n)
    Xt = rs.randn(n // 4, 8)
    return X, y, Xt


def _ours(prior, X, y, Xt):
    def run():
        reg = ScaleMixtureNNGPRegressor(prior=prior, noise=1e-3, optimizer=None).fit(X, y)
        _, std = reg.predict(Xt, return_std=True)
        assert np.all(np.isfinite(std))

    return run


def _theirs(kernel_fn, X, y, Xt):
    def run():
        with x64_scope():
            pred = nt.predict.gradient_descent_mse_ensemble(kernel_fn, X, y[:, None], diag_reg=1e-3)
            mean, cov = pred(None, Xt, "nngp", compute_cov=True)
            np.asarray(mean), np.asarray(cov)

    return run


def _print_table(rows):
    print(
        "| device | n | mixproc Gaussian (s) | mixproc Student-t (s) | NT gd_mse_ensemble (s) "
        "| speed-up (NT / Gauss) | t / Gauss |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        g, t, ntt = r.get("gauss_s"), r.get("student_t_s"), r.get("nt_s")

        def f(v, fmt="{:.2f}"):
            return "-" if v is None else fmt.format(v)

        speed = None if (g is None or ntt is None) else ntt / g
        ratio = None if (g is None or t is None) else t / g
        print(
            f"| {r['device']} | {r['n']} | {f(g)} | {f(t)} | {f(ntt)} | "
            f"{f(speed, '{:.1f}x')} | {f(ratio)} |"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 500, 1000 (smoke run)")
    ap.add_argument("--n", type=int, nargs="*", default=None, help="training sizes")
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs after the warm-up (default 5 for n <= 1000, else 2)",
    )
    ap.add_argument(
        "--ours-only",
        action="store_true",
        help="one Student-t fit + predict per n, no warm-up (for /usr/bin/time -v)",
    )
    ap.add_argument("--json", type=str, default=None, help="write the raw rows to this file")
    ap.add_argument("--merge", type=str, nargs="*", default=None, help="print saved JSON rows")
    args = ap.parse_args(argv)
    if args.merge:
        rows = []
        for path in args.merge:
            with open(path) as fh:
                rows += json.load(fh)["rows"]
        _print_table(rows)
        return rows
    sizes = args.n or ([500, 1000] if args.quick else [1000, 4000, 8000])
    device = f"{jax.default_backend()}:{jax.devices()[0].device_kind}"
    print(f"devices: {jax.devices()}  backend: {jax.default_backend()}", flush=True)
    kernel_fn = build_network("mlp", 2, "relu", 1.5, 0.05)[2]
    rows = []
    for n in sizes:
        X, y, Xt = _data(n)
        row = {"device": device, "n": n, "n_test": len(Xt), "load_before": os.getloadavg()[0]}
        if args.ours_only:
            t = time.perf_counter()
            _ours(InverseGamma(2.0, 2.0), X, y, Xt)()
            row["student_t_s"] = time.perf_counter() - t  # includes compilation
        else:
            rep = args.repeat or (5 if n <= 1000 else 2)
            row["repeat"] = rep
            row["gauss_s"] = _time(_ours(Constant(1.0), X, y, Xt), rep)
            row["student_t_s"] = _time(_ours(InverseGamma(2.0, 2.0), X, y, Xt), rep)
            row["nt_s"] = _time(_theirs(kernel_fn, X, y, Xt), rep)
        row["load_after"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), flush=True)
    _print_table(rows)
    if args.json:
        meta = {"host": platform.node(), "jax": jax.__version__, "load": os.getloadavg()}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
