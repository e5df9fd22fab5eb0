"""One full-covariance EM iteration: mixproc's jitted SS-GMM core vs scikit-learn.

Cases: UMAP MNIST (70000 x 10) with K = 10 and 50, synthetic 20000 x 64 with K = 50.
Both sides start from the same parameters; scikit-learn's iteration is ``_e_step`` +
``_m_step`` of ``GaussianMixture`` (always on the CPU); ours is one ``fit_em`` iteration
(E-step and sufficient statistics as a blocked scan of two GEMMs per block, NIW-MAP
M-step) on JAX's default backend (an accelerator when there is one). Peak memory is the
maximum resident-set size sampled every millisecond during the timed calls, minus the RSS
before; on an accelerator our side also reports the device's ``peak_bytes_in_use``.

Usage: ``python benchmarks/gmm_speed.py [--quick] [--cases 0 1 2] [--reps 5]
[--json out.json] [--data-dir ../shared/data/gcd]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture

from gmm._niw import NIWPrior
from gmm._ssgmm_core import GMMParams, block_layout, fit_em, make_mesh, shard_rows
from mixtures.base import x64_scope

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
    block, nb = block_layout(n, k, d, mesh.devices.size)
    rows = block * nb
    xs = np.zeros((rows, d))
    xs[:n] = X
    ys = np.full(rows, -1)
    ws = np.zeros(rows)
    ws[:n] = 1
    ml = NIWPrior(np.zeros(d), 0.0, -(d + 2.0), np.zeros((d, d)))  # = sklearn's ML M-step
    with x64_scope():
        arrs = shard_rows(
            mesh,
            jnp.asarray(xs.reshape(nb, block, d)),
            jnp.asarray(ys.reshape(nb, block)),
            jnp.asarray(ws.reshape(nb, block)),
        )
        p0 = GMMParams(*map(jnp.asarray, params))
        args = (jnp.ones(k, bool), jnp.asarray(ml.mean), 0.0, -(d + 2.0), jnp.asarray(ml.psi))

        def run():
            r = fit_em(*arrs, p0, *args, 1e-6, -1.0, 1, mesh=mesh)
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
    dev_mb = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            dev_mb = stats["peak_bytes_in_use"] / 2**20
    except Exception:  # CPU backends may not report memory statistics
        dev_mb = None
    return float(np.median(times)), mem.delta_mb, compile_s, dev_mb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="subsample 10x, 2 repetitions")
    ap.add_argument("--cases", type=int, nargs="*", default=None, help="subset of 0 1 2")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the raw results to this path")
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("MIXPROC_GCD_DATA", str(ROOT.parent / "shared" / "data" / "gcd")),
    )
    a = ap.parse_args(argv)
    reps = a.reps or (2 if a.quick else 5)
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
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
