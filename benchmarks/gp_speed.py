"""Fit + predict time of ScaleMixtureNNGPRegressor vs nt.predict.gradient_descent_mse_ensemble.

Same kernel (depth-2 ReLU MLP NNGP), same data (n training points in 8 dimensions, n/4
test points), side by side; also the Student-t (inverse-gamma) posterior vs the Gaussian
(constant prior) one. Both sides are float64; each time is the best of 2 runs (the first
run compiles). Ours: kernel matrix (one jitted call up to n = 4096, 2048-row blocks
above), one in-place LAPACK Cholesky, mean by ``cho_solve``, only the predictive variances
(one triangular solve). neural-tangents: its ``gradient_descent_mse_ensemble(t=None)``
with ``compute_cov=True`` (it has no variance-only mode).

Usage: python benchmarks/gp_speed.py [--quick] [--n 1000 4000 8000]
       python benchmarks/gp_speed.py --ours-only --n 20000   # for /usr/bin/time -v
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from gp import Constant, InverseGamma, ScaleMixtureNNGPRegressor
from gp._neural_tangents import nt
from gp.kernels import build_network
from mixtures.base import x64_scope


def _time(fn, repeat=2):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, nargs="*", default=None)
    ap.add_argument(
        "--ours-only", action="store_true", help="one Student-t fit + predict per n (memory)"
    )
    args = ap.parse_args()
    sizes = args.n or ([500, 1000] if args.quick else [1000, 4000, 8000])
    rs = np.random.RandomState(0)
    kernel_fn = build_network("mlp", 2, "relu", 1.5, 0.05)[2]
    print(f"devices: {jax.devices()}")
    print(
        "| n | mixproc Gaussian (s) | mixproc Student-t (s) | NT gd_mse_ensemble (s) "
        "| speed-up | t / Gauss |"
    )
    print("|---|---|---|---|---|---|")
    for n in sizes:
        X = rs.randn(n, 8)
        y = np.sin(X[:, 0]) + 0.1 * rs.randn(n)
        Xt = rs.randn(n // 4, 8)

        def ours(prior, X=X, y=y, Xt=Xt):
            def run():
                reg = ScaleMixtureNNGPRegressor(prior=prior, noise=1e-3).fit(X, y)
                reg.predict(Xt, return_std=True)

            return run

        def theirs(X=X, y=y, Xt=Xt):
            with x64_scope():
                pred = nt.predict.gradient_descent_mse_ensemble(
                    kernel_fn, X, y[:, None], diag_reg=1e-3
                )
                mean, cov = pred(None, Xt, "nngp", compute_cov=True)
                np.asarray(mean), np.asarray(cov)

        if args.ours_only:
            t = _time(ours(InverseGamma(2.0, 2.0)), repeat=1)
            print(f"| {n} | - | {t:.2f} | - | - | - |", flush=True)
            continue
        t_g = _time(ours(Constant(1.0)))
        t_t = _time(ours(InverseGamma(2.0, 2.0)))
        t_nt = _time(theirs)
        print(
            f"| {n} | {t_g:.2f} | {t_t:.2f} | {t_nt:.2f} | {t_nt / t_g:.1f}x | {t_t / t_g:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
