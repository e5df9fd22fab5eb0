"""Gaussian-mixture EM speed and memory: mixproc vs scikit-learn's ``GaussianMixture``.

Two measurements, side by side in one run:

1. **One full-covariance EM iteration** from the same parameters: scikit-learn's
   ``_e_step`` + ``_m_step`` against one iteration of the EM engine
   (:func:`mixtures.em.fit_em_blocks`: E-step and statistics as a blocked scan of two GEMMs
   per block, M-step) on JAX's default backend. Cases: UMAP MNIST (70000 x 10) with K = 10
   and 50, synthetic 20000 x 64 with K = 50.
2. **Whole ``fit``**, initialisation included (k-means on both sides), on UMAP MNIST with
   K = 10 and 50: ``sklearn.mixture.GaussianMixture`` against
   ``mixtures.GaussianMixtureModel`` and ``gmm.SemiSupervisedGMM`` with no labels and no
   split/merge (``split_merge=False``), all with ``max_iter=T, tol=0`` so that every side runs
   exactly T iterations. Times are the median of ``--reps`` fits after one warm-up fit (the
   warm-up's extra time is reported as compile time).

Peak memory is the maximum resident-set size sampled every millisecond during the timed
calls, minus the RSS before; on an accelerator our side also reports the device's
``peak_bytes_in_use``.

Usage: ``python benchmarks/gmm_speed.py [--quick] [--cases 0 1 2] [--fit-cases 0 1]
[--reps 5] [--fit-iters 20] [--json out.json] [--data-dir ../shared/data/gcd]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import threading
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from gmm import SemiSupervisedGMM
from mixtures import GaussianMixtureModel
from mixtures.base import x64_scope
from mixtures.em import (
    GaussianMixtureParams,
    fit_em_blocks,
    make_mesh,
    maximum_likelihood_prior,
    to_blocks,
)
from mixtures.niw import NIWPrior

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._stop = False

        def poll():
            while not self._stop:
                self.peak = max(self.peak, _rss())
                time.sleep(0.001)

        self._t = threading.Thread(target=poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.delta_mb = (self.peak - self.base) / 2**20


def init_params(X, k, seed=0):
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), k, replace=False)]
    cov = np.cov(X.T) / k ** (2 / X.shape[1]) + 1e-3 * np.eye(X.shape[1])
    return np.full(k, 1.0 / k), means, np.broadcast_to(cov, (k,) + cov.shape).copy()


def bench_sklearn(X, params, reps):
    w, m, c = params
    gm = GaussianMixture(len(w), covariance_type="full", max_iter=1, reg_covar=1e-6)
    gm.weights_, gm.means_, gm.covariances_ = w.copy(), m.copy(), c.copy()
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    gm.precisions_cholesky_ = _compute_precision_cholesky(c, "full")
    gm._m_step(X, gm._e_step(X)[1])  # warm caches
    gm.weights_, gm.means_, gm.covariances_ = w.copy(), m.copy(), c.copy()
    gm.precisions_cholesky_ = _compute_precision_cholesky(c, "full")
    times = []
    with PeakRSS() as mem:
        for _ in range(reps):
            t = time.perf_counter()
            _, log_resp = gm._e_step(X)
            gm._m_step(X, log_resp)
            times.append(time.perf_counter() - t)
    return float(np.median(times)), mem.delta_mb


def bench_mixproc(X, params, reps):
    n, d = X.shape
    k = len(params[0])
    mesh = make_mesh()
    ml = maximum_likelihood_prior(d)  # the NIW-MAP M-step becomes sklearn's ML M-step
    with x64_scope():
        data = to_blocks(X, n_components=k, mesh=mesh, center=False)
        p0 = GaussianMixtureParams(*map(jnp.asarray, params))
        prior = NIWPrior(*(jnp.asarray(v, jnp.float64) for v in ml))
        active = jnp.ones(k, bool)

        def run():
            r = fit_em_blocks(data, p0, active, prior, 1e-6, -1.0, max_iter=1, mesh=mesh)
            jax.block_until_ready(r)
            return r

        t = time.perf_counter()
        run()
        compile_s = time.perf_counter() - t
        times = []
        with PeakRSS() as mem:
            for _ in range(reps):
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
    return float(np.median(times)), mem.delta_mb, compile_s, _device_peak_mb()


def _device_peak_mb():
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # CPU backends may not report memory statistics
        return None
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    return None


def bench_whole_fit(X, k, iters, reps):
    """Whole fits of the three estimators, interleaved rep by rep so that a slow spell of
    the machine hits every side alike; median wall time per estimator."""
    common = dict(max_iter=iters, tol=0.0, random_state=0)
    makers = {
        "sklearn": lambda: GaussianMixture(k, **common),
        "GaussianMixtureModel": lambda: GaussianMixtureModel(k, **common),
        "SemiSupervisedGMM": lambda: SemiSupervisedGMM(k, split_merge=False, **common),
    }
    first, times, peaks, fitted = {}, {n: [] for n in makers}, {n: 0.0 for n in makers}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, make in makers.items():  # warm-up: compilation, caches
            t = time.perf_counter()
            make().fit(X)
            first[name] = time.perf_counter() - t
        for _ in range(reps):
            for name, make in makers.items():
                with PeakRSS() as mem:
                    t = time.perf_counter()
                    fitted[name] = make().fit(X)
                    times[name].append(time.perf_counter() - t)
                peaks[name] = max(peaks[name], mem.delta_mb)
    out = {}
    for name in makers:
        med = float(np.median(times[name]))
        out[name] = {
            "fit_s": med,
            "compile_s": max(first[name] - med, 0.0),
            "peak_rss_mb": peaks[name],
            "n_iter": int(fitted[name].n_iter_),
            "mean_log_likelihood": float(fitted[name].score(X)),
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="subsample 10x, 2 repetitions")
    ap.add_argument("--cases", type=int, nargs="*", default=None, help="subset of 0 1 2")
    ap.add_argument(
        "--fit-cases", type=int, nargs="*", default=None, help="whole-fit cases, subset of 0 1"
    )
    ap.add_argument("--fit-iters", type=int, default=20, help="EM iterations per whole fit")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the raw results to this path")
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("MIXPROC_GCD_DATA", str(ROOT.parent / "shared" / "data" / "gcd")),
    )
    a = ap.parse_args(argv)
    reps = a.reps or (2 if a.quick else 5)
    fit_reps = a.reps or (1 if a.quick else 5)
    mnist = np.load(pathlib.Path(a.data_dir) / "umap_mnist.npz")["X"].astype(np.float64)
    synth = np.random.default_rng(0).normal(size=(20000, 64))
    cases = [("UMAP MNIST", mnist, 10), ("UMAP MNIST", mnist, 50), ("synthetic", synth, 50)]
    if a.cases is not None:
        cases = [cases[i] for i in a.cases]
    device = str(jax.devices()[0])
    print(f"devices: {jax.devices()} (scikit-learn on the CPU)")
    hdr = (
        f"{'data':<12}{'N x D':>12}{'K':>4} | {'sklearn s':>10}{'mixproc s':>10}{'speed-up':>9}"
        f" | {'sk MB':>7}{'mp MB':>7}{'dev MB':>8} | {'compile s':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    results = []
    for name, X, k in cases:
        if a.quick:
            X = X[: len(X) // 10]
        params = init_params(X, k)
        ts, ms = bench_sklearn(X, params, reps)
        tm, mm, cs, dm = bench_mixproc(X, params, reps)
        dms = f"{dm:>8.1f}" if dm is not None else f"{'-':>8}"
        print(
            f"{name:<12}{f'{X.shape[0]}x{X.shape[1]}':>12}{k:>4} | {ts:>10.4f}{tm:>10.4f}"
            f"{ts / tm:>8.1f}x | {ms:>7.1f}{mm:>7.1f}{dms} | {cs:>9.2f}"
        )
        results.append(
            {
                "data": name,
                "n": int(X.shape[0]),
                "d": int(X.shape[1]),
                "k": k,
                "sklearn_s": ts,
                "mixproc_s": tm,
                "speedup": ts / tm,
                "sklearn_peak_rss_mb": ms,
                "mixproc_peak_rss_mb": mm,
                "mixproc_device_peak_mb": dm,
                "compile_s": cs,
                "device": device,
                "reps": reps,
            }
        )
    fit_cases = [("UMAP MNIST", mnist, 10), ("UMAP MNIST", mnist, 50)]
    if a.fit_cases is not None:
        fit_cases = [fit_cases[i] for i in a.fit_cases]
    print(
        f"\nwhole fit, initialisation included, {a.fit_iters} EM iterations, median of {fit_reps}"
    )
    hdr = (
        f"{'data':<12}{'N x D':>12}{'K':>4} | {'estimator':<22}{'fit s':>8}{'s/iter':>8}"
        f"{'vs sklearn':>11} | {'peak MB':>8} | {'compile s':>9} | {'mean loglik':>11}"
    )
    print(hdr)
    print("-" * len(hdr))
    fits = []
    for name, X, k in fit_cases:
        if a.quick:
            X = X[: len(X) // 10]
        res = bench_whole_fit(X, k, a.fit_iters, fit_reps)
        base = res["sklearn"]["fit_s"]
        for est, r in res.items():
            print(
                f"{name:<12}{f'{X.shape[0]}x{X.shape[1]}':>12}{k:>4} | {est:<22}"
                f"{r['fit_s']:>8.3f}{r['fit_s'] / max(r['n_iter'], 1):>8.4f}"
                f"{base / r['fit_s']:>10.1f}x | {r['peak_rss_mb']:>8.1f} | {r['compile_s']:>9.2f}"
                f" | {r['mean_log_likelihood']:>11.4f}"
            )
            fits.append(
                {"data": name, "n": int(X.shape[0]), "d": int(X.shape[1]), "k": k,
                 "estimator": est, "speedup_vs_sklearn": base / r["fit_s"], "reps": fit_reps,
                 "device": device, **r}
            )  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"iteration": results, "whole_fit": fits}, f, indent=1)


if __name__ == "__main__":
    main()
