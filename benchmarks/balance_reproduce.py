"""Reproduce the shape of auxiliary-loss-free load balancing (arXiv 2408.15664, 2512.03915).

Part 1 (synthetic, seconds): router-score streams s = sigmoid(mu_i + drift_i(n) + xi) with a
Zipf-like skew mu_i = -c log(i + 1) (note C1): frozen, i.i.d. and drifting (sinusoidal drift plus
an expert permutation every 200 batches). Arms: no bias, sign rule (u sweep), magnitude rule,
dual subgradient with constant / 1/sqrt(n) / 1/n steps. Reported: MaxVio_batch, the dual gap
D(p_n) - OPT_LP against the exact LP (HiGHS), monotonicity of D(p_n), cumulative regret against
the best fixed p in hindsight (an LP on the concatenated stream), and the aux-loss trade-off of a
trainable router (note C4) against Loss-Free.

Part 2 (tiny MoE LM): byte-level decoder-only Transformer, 16 routed experts top-2 + 1 shared
expert, sigmoid gate, on Python's own standard-library ``.py`` sources (located with
``sysconfig.get_paths()["stdlib"]``, ``test``/``tests``/``idlelib`` folders excluded, files sorted
and split 90/5/5 by file, first ~1.5 MB of training text). Aux loss (alpha) vs Loss-Free (u):
validation perplexity (per byte) and MaxVio_global per layer.

Run: ``python benchmarks/balance_reproduce.py [--quick] [--part synthetic|lm|all]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sysconfig
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mixtures.base import x64_scope
from mixtures.experts import (
    AuxLossFreeBalancer,
    MoEConfig,
    TransformerConfig,
    dual_objective,
    evaluate_lm,
    max_violation,
    solve_balanced_assignment,
    topk_loads,
    train_transformer,
)


def scores_stream(rng, n_batches, t, n, kind, c=0.8, sigma=0.5):
    mu = -c * np.log(np.arange(1, n + 1))
    out = np.empty((n_batches, t, n))
    for b in range(n_batches):
        m = mu.copy()
        if kind == "drift":
            m = m + 0.5 * np.sin(2 * np.pi * b / 150 + np.arange(n))
            m = m[np.random.default_rng(b // 200).permutation(n)]
        xi = sigma * (rng.standard_normal((t, n)) if kind != "frozen" or b == 0 else 0)
        out[b] = out[0] if (kind == "frozen" and b > 0) else 1 / (1 + np.exp(-(m + xi)))
    return out


ARMS = [
    ("no bias", "sign", "constant", 0.0),
    ("sign u=1e-4", "sign", "constant", 1e-4),
    ("sign u=1e-3", "sign", "constant", 1e-3),
    ("sign u=1e-2", "sign", "constant", 1e-2),
    ("magnitude u=1e-2", "magnitude", "constant", 1e-2),
    ("dual const 1e-4", "dual", "constant", 1e-4),
    ("dual 1e-2/sqrt(n)", "dual", "inv_sqrt_t", 1e-2),
    ("dual 5e-2/n", "dual", "inv_t", 5e-2),
]


def run_stream(g, k, rule, sched, rate):
    bal = AuxLossFreeBalancer(rule, sched)

    def body(s, gb):
        loads = topk_loads(gb, s.bias, k)
        d = dual_objective(gb, s.bias.astype(gb.dtype), k)
        return bal.update(s, loads), (loads, d, s.bias)

    _, (loads, d, b) = jax.lax.scan(body, bal.init(g.shape[-1], rate), g)
    return np.asarray(loads), np.asarray(d), np.asarray(b)


def part_synthetic(quick):
    rng = np.random.default_rng(0)
    t, n, k = (256, 16, 2)
    nb = 150 if quick else 1000
    print(f"\n## Synthetic streams: T={t}, N={n}, K={k}, {nb} batches, sigmoid scores\n")
    frozen = scores_stream(rng, nb, t, n, "frozen")
    opt = solve_balanced_assignment(frozen[0], k).objective
    rows = []
    with x64_scope():
        for kind in ("frozen", "iid", "drift"):
            g = frozen if kind == "frozen" else scores_stream(rng, nb, t, n, kind)
            gj = jnp.asarray(g)
            for name, rule, sched, rate in ARMS:
                loads, d, _ = run_stream(gj, k, rule, sched, rate)
                mv = np.asarray(max_violation(loads))
                row = {
                    "stream": kind,
                    "arm": name,
                    "mv_first": mv[0],
                    "mv_mid": mv[min(100, nb - 1)],
                    "mv_last100": mv[-100:].mean(),
                    "mv_max_last100": mv[-100:].max(),
                }
                if kind == "frozen":
                    row["gap_end"] = d[-1] - opt
                    dd = np.diff(d)
                    row["D_nonincreasing"] = np.mean(dd <= 1e-9)
                rows.append(row)
    print(
        "| stream | arm | MaxVio batch 1 | batch 100 | mean last 100 | max last 100 |"
        " D(p)-OPT end | frac. steps D non-increasing |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = f"{r['gap_end']:.3g} | {r['D_nonincreasing']:.2f}" if "gap_end" in r else "- | -"
        print(
            f"| {r['stream']} | {r['arm']} | {r['mv_first']:.2f} | {r['mv_mid']:.3f} | "
            f"{r['mv_last100']:.3f} | {r['mv_max_last100']:.3f} | {extra} |"
        )
    part_regret(quick)
    part_aux_sweep(quick)


def part_regret(quick):
    t, n, k = 64, 8, 2
    nb = 200 if quick else 400
    seeds = 3 if quick else 10
    print(f"\n## Regret on an i.i.d. stream (T={t}, N={n}, K={k}, {nb} batches, {seeds} seeds)\n")
    print("Comparator: p* = argmin_p sum_n D_n(p), from the LP on the concatenated stream.")
    arms = [
        ("dual const 1e-3", "dual", "constant", 1e-3),
        ("dual 2e-2/sqrt(n)", "dual", "inv_sqrt_t", 2e-2),
        ("dual 0.1/n", "dual", "inv_t", 0.1),
        ("sign u=1e-3", "sign", "constant", 1e-3),
    ]
    checkpoints = [10, 30, 100, nb]
    res = {a[0]: [] for a in arms}
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        g = scores_stream(rng, nb, t, n, "iid")
        lp = solve_balanced_assignment(g.reshape(-1, n), k)
        with x64_scope():
            gj = jnp.asarray(g)
            pstar = jnp.asarray(lp.dual)
            d_star = np.asarray(jax.vmap(dual_objective, (0, None, None))(gj, pstar, k))
            for name, rule, sched, rate in arms:
                _, d, _ = run_stream(gj, k, rule, sched, rate)
                res[name].append(np.cumsum(d - d_star))
    print("| arm | " + " | ".join(f"R_{c}" for c in checkpoints) + " | log-log slope (N=30..end) |")
    print("|---|" + "---|" * (len(checkpoints) + 1))
    for name, curves in res.items():
        r = np.mean(curves, 0)
        slope = np.polyfit(np.log(np.arange(30, nb + 1)), np.log(np.maximum(r[29:], 1e-12)), 1)[0]
        print(
            f"| {name} | "
            + " | ".join(f"{r[c - 1]:.3g}" for c in checkpoints)
            + f" | {slope:.2f} |"
        )


def part_aux_sweep(quick):
    """Note C4: trainable linear router, fixed teacher affinity; quality vs MaxVio."""
    t, n, k, d = 512, 16, 2, 16
    steps = 100 if quick else 600
    rng = np.random.default_rng(7)
    teacher = rng.normal(size=(d, n))
    skew = -0.8 * np.log(np.arange(1, n + 1))
    print(f"\n## Aux loss vs Loss-Free with a trainable router (note C4; {steps} steps)\n")
    opt = optax.adam(1e-2)

    def quality(w, bias, u, q):
        s = jax.nn.sigmoid(u @ w)
        _, idx = jax.lax.top_k(s + jax.lax.stop_gradient(bias), k)
        g = jnp.take_along_axis(s, idx, -1)
        qual = jnp.mean(jnp.sum(g * jnp.take_along_axis(q, idx, -1), -1))
        loads = jnp.sum(jax.nn.one_hot(idx, n), (0, 1))
        lbal = jnp.sum(jax.lax.stop_gradient(loads) * n / (k * t) * jnp.mean(s, 0))
        return qual, lbal, loads

    @jax.jit
    def run(alpha, rate, key):
        bal = AuxLossFreeBalancer("sign")
        w = 0.1 * jax.random.normal(key, (d, n))

        def step(carry, key):
            w, os, bs = carry
            u = jax.random.normal(key, (t, d))
            q = jax.nn.sigmoid(u @ teacher + skew)  # skewed ground-truth affinity

            def loss(w):
                qual, lbal, loads = quality(w, bs.bias, u, q)
                return -qual + alpha * lbal, (qual, loads)

            grads, (qual, loads) = jax.grad(loss, has_aux=True)(w)
            upd, os = opt.update(grads, os)
            return (optax.apply_updates(w, upd), os, bal.update(bs, loads)), (qual, loads)

        _, (qual, loads) = jax.lax.scan(
            step, (w, opt.init(w), bal.init(n, rate)), jax.random.split(key, steps)
        )
        return qual, loads

    print("| arm | quality (mean last 50) | MaxVio_batch (mean last 50) |")
    print("|---|---|---|")
    key = jax.random.PRNGKey(0)
    for alpha in (0.0, 1e-3, 1e-2, 1e-1, 1.0):
        qual, loads = run(alpha, 0.0, key)
        print(
            f"| aux alpha={alpha:g} | {float(qual[-50:].mean()):.4f} | "
            f"{float(max_violation(loads)[-50:].mean()):.3f} |"
        )
    for u in (1e-4, 1e-3, 1e-2):
        qual, loads = run(0.0, u, key)
        print(
            f"| Loss-Free u={u:g} | {float(qual[-50:].mean()):.4f} | "
            f"{float(max_violation(loads)[-50:].mean()):.3f} |"
        )


# ---------------------------------------------------------------------------------------------


def stdlib_corpus(max_train_bytes):
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "site-packages", "__pycache__"}
    files = sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))
    rng = np.random.default_rng(0)
    split = rng.random(len(files))
    parts = {"train": [], "val": []}
    sizes = {"train": 0, "val": 0}
    caps = {"train": max_train_bytes, "val": max_train_bytes // 10}
    for f, r in zip(files, split, strict=True):
        name = "train" if r < 0.9 else "val" if r < 0.95 else None
        if name is None or sizes[name] >= caps[name]:
            continue
        data = f.read_bytes()
        parts[name].append(data)
        sizes[name] += len(data)
    return {k: np.frombuffer(b"".join(v), np.uint8).astype(np.int32) + 3 for k, v in parts.items()}


def part_lm(quick):
    ctx, bs = 64, 32
    steps = 40 if quick else 300
    seeds = [0]
    data = stdlib_corpus(300_000 if quick else 1_500_000)
    val = data["val"]
    n_val = (len(val) - 1) // ctx
    n_val = min(n_val, 64 if quick else 256)
    v_in = val[: n_val * ctx].reshape(n_val, ctx)
    v_out = val[1 : n_val * ctx + 1].reshape(n_val, ctx)
    print(
        f"\n## Tiny MoE LM on stdlib sources ({len(data['train'])} train bytes, "
        f"{n_val * ctx} val bytes; {steps} steps x {bs} x {ctx} bytes)\n"
    )
    base = MoEConfig(
        n_experts=16, router="topk", k=2, capacity_factor=None, gate="sigmoid", renormalize=True
    )
    cfg_kw = dict(
        vocab_size=259,
        d_model=64,
        n_heads=4,
        d_ff=32,
        n_encoder_layers=0,
        n_decoder_layers=2,
        max_len=ctx,
        moe_every=1,
        n_shared_experts=1,
    )
    arms = [
        ("aux alpha=1e-3", base, 1e-3, None, 0.0),
        ("aux alpha=1e-2", base, 1e-2, None, 0.0),
        ("Loss-Free u=1e-3", base._replace(router="loss_free"), 0.0, "sign", 1e-3),
        ("Loss-Free u=1e-2", base._replace(router="loss_free"), 0.0, "sign", 1e-2),
    ]
    train = data["train"]
    print(
        "| arm | seed | val PPL (per byte) | bits/byte | MaxVio_global mean / max over layers |"
        " MaxVio_batch mean last 50 | time s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, moe, alpha, rule, u in arms:
        cfg = TransformerConfig(moe=moe, **cfg_kw)
        for seed in seeds:
            rng = np.random.default_rng(seed)

            def batches(step, rng=rng):
                starts = rng.integers(0, len(train) - ctx - 1, size=bs)
                win = train[starts[:, None] + np.arange(ctx + 1)]
                return {"tgt_in": win[:, :-1], "tgt_out": win[:, 1:]}

            t0 = time.time()
            res = train_transformer(
                cfg,
                batches,
                n_steps=steps,
                key=jax.random.PRNGKey(seed),
                learning_rate=2e-3,
                warmup=50,
                aux_alpha=alpha,
                balancer=AuxLossFreeBalancer(rule) if rule else None,
                balancer_rate=u,
                verbose=0,
            )
            biases = res.balancer_state.bias if res.balancer_state is not None else None
            ev = evaluate_lm(res.params, cfg, v_in, v_out, biases=biases)
            mvg = ev["max_violation_global"]
            mvb = res.history["max_violation_batch"][-50:].mean()
            print(
                f"| {name} | {seed} | {ev['perplexity']:.3f} | {ev['nll'] / np.log(2):.3f} | "
                f"{mvg.mean():.3f} / {mvg.max():.3f} | {mvb:.3f} | {time.time() - t0:.0f} |",
                flush=True,
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--part", choices=("synthetic", "lm", "all"), default="all")
    args = ap.parse_args()
    t0 = time.time()
    if args.part in ("synthetic", "all"):
        part_synthetic(args.quick)
    if args.part in ("lm", "all"):
        part_lm(args.quick)
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
