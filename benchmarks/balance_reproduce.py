"""Reproduce the shape of auxiliary-loss-free load balancing (arXiv 2408.15664, 2512.03915).

Part 1 (synthetic, CPU minutes): router-score streams s = sigmoid(mu_i + drift_i(n) + xi) with a
Zipf-like skew mu_i = -c log(i + 1): frozen, i.i.d. and drifting (sinusoidal drift plus
an expert permutation every 200 batches). Bias arms: no bias, sign rule (u sweep), magnitude
rule, dual subgradient with constant / 1/sqrt(n) / 1/n steps. Reported: MaxVio_batch over time,
the dual gap D(p_n) - OPT_LP against the exact LP (HiGHS), whether the Lagrangian D(p_n) (and
the routed objective) is monotone per step, the cumulative regret against the best fixed p in
hindsight (an LP on the concatenated stream) with its growth on log axes, and the aux-loss
alpha sweep against Loss-Free (u sweep) with a trainable router on a skewed and on a drifting
affinity stream. ``--figures DIR`` writes the curves as PNGs.

Part 2 (tiny MoE LM): byte-level decoder-only Transformer, 16 routed experts top-2 + 1 shared
expert, sigmoid gate with renormalised top-k weights, on Python's own standard-library ``.py``
sources (``sysconfig.get_paths()["stdlib"]``, ``test``/``tests``/``idlelib`` excluded, split
90/5/5 by file, training files in random order up to 4 MB, 16 MB for ``--size note``).
Aux loss (alpha) vs Loss-Free (u): validation perplexity (per byte) and MaxVio_global per
layer, counted over 512 windows spread
evenly over *all* validation files (the first version used the first 16 KB of validation text,
i.e. two files, which made MaxVio_global a measure of topic shift), plus the same MaxVio on
held-in training text and MaxVio_batch over training. ``--size cpu`` (2 layers, d = 64,
context 64) or ``--size note`` (4 layers, d = 128, d_ff = 128, context 256; for a GPU).

Run::

    python benchmarks/balance_reproduce.py --part synthetic --figures figs
    python benchmarks/balance_reproduce.py --part lm --seeds 0 1 2 --steps 300 --json lm.json
    python benchmarks/balance_reproduce.py --merge lm_a.json lm_b.json   # shards -> tables

``--quick`` is a smoke run of both parts.
"""

from __future__ import annotations

import argparse
import json
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
    routed_objective,
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
        p = s.bias.astype(gb.dtype)
        d = dual_objective(gb, p, k)
        return bal.update(s, loads), (loads, d, routed_objective(gb, p, k), s.bias)

    _, (loads, d, r, b) = jax.lax.scan(body, bal.init(g.shape[-1], rate), g)
    return np.asarray(loads), np.asarray(d), np.asarray(r), np.asarray(b)


def _figure(figures, name, draw):
    if figures is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    fig = draw(plt)
    fig.tight_layout()
    fig.savefig(figures / name, dpi=110)
    plt.close(fig)
    print(f"(figure {figures / name})")


def part_synthetic(quick, figures=None):
    rng = np.random.default_rng(0)
    t, n, k = (256, 16, 2)
    nb = 150 if quick else 1000
    print(f"\n## Synthetic streams: T={t}, N={n}, K={k}, {nb} batches, sigmoid scores\n")
    frozen = scores_stream(rng, nb, t, n, "frozen")
    opt = solve_balanced_assignment(frozen[0], k).objective
    rows, curves, lag = [], {}, {}
    with x64_scope():
        for kind in ("frozen", "iid", "drift"):
            g = frozen if kind == "frozen" else scores_stream(rng, nb, t, n, kind)
            gj = jnp.asarray(g)
            for name, rule, sched, rate in ARMS:
                loads, d, routed, _ = run_stream(gj, k, rule, sched, rate)
                mv = np.asarray(max_violation(loads))
                curves[kind, name] = mv
                row = {
                    "stream": kind,
                    "arm": name,
                    "mv": [mv[min(c, nb) - 1] for c in (1, 10, 100, 300)],
                    "mv_last100": mv[-100:].mean(),
                    "mv_max_last100": mv[-100:].max(),
                }
                if kind == "frozen":
                    lag[name] = (d, routed)
                    row["gap_end"] = d[-1] - opt
                    row["D_nonincreasing"] = np.mean(np.diff(d) <= 1e-9)
                    row["R_nonincreasing"] = np.mean(np.diff(routed) <= 1e-9)
                rows.append(row)
    print("MaxVio_batch over time (bias rules; aux-loss arms are in the trainable-router table):\n")
    print(
        "| stream | arm | MaxVio batch 1 | 10 | 100 | 300 | mean last 100 | max last 100 |"
        " D(p)-OPT end | frac. steps D non-increasing | frac. steps routed obj. non-increasing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = (
            f"{r['gap_end']:.3g} | {r['D_nonincreasing']:.2f} | {r['R_nonincreasing']:.2f}"
            if "gap_end" in r
            else "- | - | -"
        )
        print(
            f"| {r['stream']} | {r['arm']} | "
            + " | ".join(f"{v:.3f}" for v in r["mv"])
            + f" | {r['mv_last100']:.3f} | {r['mv_max_last100']:.3f} | {extra} |"
        )

    def draw_mv(plt):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
        for ax, kind in zip(axes, ("frozen", "iid", "drift"), strict=True):
            for name, *_ in ARMS:
                ax.plot(np.maximum(curves[kind, name], 1e-3), label=name, lw=1)
            ax.set_yscale("log")
            ax.set_title(f"{kind} stream")
            ax.set_xlabel("batch n")
        axes[0].set_ylabel("MaxVio_batch")
        axes[0].legend(fontsize=7)
        return fig

    def draw_lag(plt):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name, *_ in ARMS[1:]:
            d, routed = lag[name]
            axes[0].plot(np.maximum(d - opt, 1e-6), label=name, lw=1)
            axes[1].plot(routed, label=name, lw=1)
        axes[0].set_yscale("log")
        axes[0].set_title("dual / Lagrangian D(p_n) - OPT_LP (frozen stream)")
        axes[1].axhline(opt, color="k", ls=":", label="OPT_LP")
        axes[1].set_title("routed objective sum gamma x(p_n)")
        axes[0].legend(fontsize=7)
        for ax in axes:
            ax.set_xlabel("batch n")
        return fig

    _figure(figures, "balance_maxvio_streams.png", draw_mv)
    _figure(figures, "balance_lagrangian.png", draw_lag)
    part_regret(quick, figures)
    part_aux_sweep(quick, figures)


def part_regret(quick, figures=None):
    t, n, k = 64, 8, 2
    nb = 200 if quick else 400
    seeds = 3 if quick else 10
    print(f"\n## Regret on an i.i.d. stream (T={t}, N={n}, K={k}, {nb} batches, {seeds} seeds)\n")
    print("Comparator: p* = argmin_p sum_n D_n(p), from the LP on the concatenated stream.")
    arms = [
        ("dual const 1e-3", "dual", "constant", 1e-3),
        ("dual 2e-2/sqrt(n)", "dual", "inv_sqrt_t", 2e-2),
        ("dual 0.1/n", "dual", "inv_t", 0.1),
        ("dual 5e-3/n", "dual", "inv_t", 5e-3),
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
                _, d, _, _ = run_stream(gj, k, rule, sched, rate)
                res[name].append(np.cumsum(d - d_star))
    print(
        "| arm | "
        + " | ".join(f"R_{c}" for c in checkpoints)
        + " | log-log slope (N=30..end) | R_end / log(N_end) | R_end / sqrt(N_end) |"
    )
    print("|---|" + "---|" * (len(checkpoints) + 3))
    for name, cs in res.items():
        r = np.mean(cs, 0)
        slope = np.polyfit(np.log(np.arange(30, nb + 1)), np.log(np.maximum(r[29:], 1e-12)), 1)[0]
        print(
            f"| {name} | "
            + " | ".join(f"{r[c - 1]:.3g}" for c in checkpoints)
            + f" | {slope:.2f} | {r[-1] / np.log(nb):.3g} | {r[-1] / np.sqrt(nb):.3g} |"
        )

    def draw(plt):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        x = np.arange(1, nb + 1)
        for name, cs in res.items():
            r = np.maximum(np.mean(cs, 0), 1e-6)
            axes[0].loglog(x, r, label=name)
            axes[1].semilogx(x, r, label=name)
        axes[0].loglog(x, 5 * np.sqrt(x), "k:", label="~ sqrt(N)")
        axes[0].set_title("cumulative regret R_N (log-log)")
        axes[1].set_title("R_N (semilog-x: log N is a line)")
        for ax in axes:
            ax.set_xlabel("N (batches)")
        axes[0].legend(fontsize=7)
        return fig

    _figure(figures, "balance_regret.png", draw)


def part_aux_sweep(quick, figures=None):
    """Trainable linear router, fixed teacher affinity; quality vs MaxVio.

    Two streams: ``skewed`` (fixed Zipf-like skew of the teacher affinity) and ``drift`` (the
    skew's expert order is permuted every 150 steps and a slow sinusoid is added).
    """
    t, n, k, d = 512, 16, 2, 16
    steps = 150 if quick else 600
    rng = np.random.default_rng(7)
    teacher = jnp.asarray(rng.normal(size=(d, n)))
    skew0 = -0.8 * np.log(np.arange(1, n + 1))
    skews = {}
    for kind in ("skewed", "drift"):
        s = np.tile(skew0, (steps, 1))
        if kind == "drift":
            for i in range(steps):
                s[i] = skew0[np.random.default_rng(i // 150).permutation(n)]
                s[i] += 0.5 * np.sin(2 * np.pi * i / 150 + np.arange(n))
        skews[kind] = jnp.asarray(s, jnp.float32)
    print(
        f"\n## Aux loss (alpha sweep) vs Loss-Free (u sweep) with a trainable router "
        f"({steps} steps, T={t}, N={n}, K={k})\n"
    )
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
    def run(alpha, rate, key, skew):
        bal = AuxLossFreeBalancer("sign")
        w = 0.1 * jax.random.normal(key, (d, n))

        def step(carry, inp):
            key, sk = inp
            w, os, bs = carry
            u = jax.random.normal(key, (t, d))
            q = jax.nn.sigmoid(u @ teacher + sk)  # skewed ground-truth affinity

            def loss(w):
                qual, lbal, loads = quality(w, bs.bias, u, q)
                return -qual + alpha * lbal, (qual, loads)

            grads, (qual, loads) = jax.grad(loss, has_aux=True)(w)
            upd, os = opt.update(grads, os)
            return (optax.apply_updates(w, upd), os, bal.update(bs, loads)), (qual, loads)

        _, (qual, loads) = jax.lax.scan(
            step, (w, opt.init(w), bal.init(n, rate)), (jax.random.split(key, steps), skew)
        )
        return qual, loads

    arms = [(f"aux alpha={a:g}", a, 0.0) for a in (0.0, 1e-3, 1e-2, 1e-1, 1.0)]
    arms += [(f"Loss-Free u={u:g}", 0.0, u) for u in (1e-4, 1e-3, 1e-2)]
    marks = [1, 10, 100, 300]
    print(
        "| stream | arm | quality (mean last 50) | MaxVio_batch step "
        + " | ".join(str(m) for m in marks)
        + " | mean last 50 | max last 50 |"
    )
    print("|---|---|---|" + "---|" * (len(marks) + 2))
    key = jax.random.PRNGKey(0)
    curves = {}
    for kind, skew in skews.items():
        for name, alpha, u in arms:
            qual, loads = run(alpha, u, key, skew)
            mv = np.asarray(max_violation(loads))
            curves[kind, name] = mv
            print(
                f"| {kind} | {name} | {float(qual[-50:].mean()):.4f} | "
                + " | ".join(f"{mv[min(m, steps) - 1]:.3f}" for m in marks)
                + f" | {mv[-50:].mean():.3f} | {mv[-50:].max():.3f} |"
            )

    def draw(plt):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
        for ax, kind in zip(axes, skews, strict=True):
            for name, *_ in arms:
                ls = "-" if name.startswith("aux") else "--"
                ax.plot(np.convolve(curves[kind, name], np.ones(10) / 10, "valid"), ls, label=name)
            ax.set_title(f"trainable router, {kind} affinity (10-step moving mean)")
            ax.set_xlabel("step")
        axes[0].set_ylabel("MaxVio_batch")
        axes[0].legend(fontsize=7)
        return fig

    _figure(figures, "balance_aux_vs_lossfree.png", draw)


# ---------------------------------------------------------------------------------------------


def stdlib_corpus(max_train_bytes):
    """Byte ids (+3) of the stdlib ``.py`` sources split 90/5/5 by file; all validation files."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}
    files = sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))
    rng = np.random.default_rng(0)
    split = rng.random(len(files))
    order = rng.permutation(len(files))  # training files in random order, not alphabetical
    parts = {"train": [], "val": []}
    size = 0
    for j in order:
        r = split[j]
        if r < 0.9:
            if size >= max_train_bytes:
                continue
            data = files[j].read_bytes()
            parts["train"].append(data)
            size += len(data)
        elif r < 0.95:
            parts["val"].append(files[j].read_bytes())
    return {k: np.frombuffer(b"".join(v), np.uint8).astype(np.int32) + 3 for k, v in parts.items()}


LM_ARMS = {
    "aux0": ("no balancing (alpha=0)", 0.0, None, 0.0),
    "aux1e-3": ("aux alpha=1e-3", 1e-3, None, 0.0),
    "aux1e-2": ("aux alpha=1e-2", 1e-2, None, 0.0),
    "lf1e-3": ("Loss-Free u=1e-3", 0.0, "sign", 1e-3),
    "lf1e-2": ("Loss-Free u=1e-2", 0.0, "sign", 1e-2),
}
LM_DEFAULT = ["aux1e-3", "aux1e-2", "lf1e-3", "lf1e-2"]
LM_SIZES = {
    # name: (layers, d_model, d_ff per expert, context, batch)
    "cpu": (2, 64, 32, 64, 32),
    "note": (4, 128, 128, 256, 32),  # for a GPU; the name is kept for BENCHMARKS.md commands
}


def _windows(arr, ctx, n):
    """``n`` evenly spaced (input, target) windows over the whole array."""
    starts = np.linspace(0, len(arr) - ctx - 2, n).astype(int)
    win = arr[starts[:, None] + np.arange(ctx + 1)]
    return win[:, :-1], win[:, 1:]


def run_lm(arm, seed, data, steps, size, n_eval):
    label, alpha, rule, u = LM_ARMS[arm]
    n_layers, d, d_ff, ctx, bs = LM_SIZES[size]
    moe = MoEConfig(
        n_experts=16,
        router="loss_free" if rule else "topk",
        k=2,
        capacity_factor=None,
        gate="sigmoid",
        renormalize=True,
    )
    cfg = TransformerConfig(
        vocab_size=259,
        d_model=d,
        n_heads=4,
        d_ff=d_ff,
        n_encoder_layers=0,
        n_decoder_layers=n_layers,
        max_len=ctx,
        moe=moe,
        moe_every=1,
        n_shared_experts=1,
    )
    train = data["train"]
    rng = np.random.default_rng(seed)

    def batches(step):
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
    train_s = time.time() - t0
    biases = res.balancer_state.bias if res.balancer_state is not None else None
    ev = evaluate_lm(res.params, cfg, *_windows(data["val"], ctx, n_eval), biases=biases)
    # the same metric on held-in training text: separates imbalance from distribution shift
    ev_tr = evaluate_lm(res.params, cfg, *_windows(train, ctx, n_eval), biases=biases)
    mvb = res.history["max_violation_batch"]  # (steps, layers)
    marks = sorted({min(s, steps) - 1 for s in (1, 50, 100, 200, 500, 1000, 2000, steps)})
    return {
        "arm": arm,
        "label": label,
        "seed": seed,
        "steps": steps,
        "size": size,
        "train_bytes": int(len(train)),
        "val_bytes": int(len(data["val"])),
        "eval_tokens": int(n_eval * ctx),
        "val_nll": ev["nll"],
        "val_ppl": ev["perplexity"],
        "mv_global": ev["max_violation_global"].tolist(),
        "mv_global_train": ev_tr["max_violation_global"].tolist(),
        "mv_batch_last50": float(mvb[-50:].mean()),
        "mv_batch_curve": {int(m + 1): float(mvb[m].mean()) for m in marks},
        "bias_final": None if biases is None else np.asarray(biases).tolist(),
        "train_s": train_s,
    }


def _ms(x, fmt=".3f"):
    x = np.asarray(x, float)
    sd = x.std(ddof=1) if len(x) > 1 else 0.0
    return f"{x.mean():{fmt}} ± {sd:{fmt}}"


def print_lm_tables(records):
    """Mean ± sd (ddof = 1) over seeds; MaxVio_global averaged over the MoE layers."""
    arms = [a for a in LM_ARMS if any(r["arm"] == a for r in records)]
    r0 = records[0]
    print(
        f"\nsize {r0['size']}, {r0['steps']} steps, {r0['train_bytes']} train bytes, "
        f"{r0['eval_tokens']} eval bytes spread over {r0['val_bytes']} val bytes\n"
    )
    print(
        "| arm | seeds | val PPL (per byte) | bits/byte | MaxVio_global val (mean over layers) |"
        " max over layers | MaxVio_global train text | MaxVio_batch last 50 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for arm in arms:
        rs = [r for r in records if r["arm"] == arm]
        print(
            f"| {rs[0]['label']} | {len(rs)} | {_ms([r['val_ppl'] for r in rs])} | "
            f"{_ms([r['val_nll'] / np.log(2) for r in rs])} | "
            f"{_ms([np.mean(r['mv_global']) for r in rs])} | "
            f"{_ms([np.max(r['mv_global']) for r in rs])} | "
            f"{_ms([np.mean(r['mv_global_train']) for r in rs])} | "
            f"{_ms([r['mv_batch_last50'] for r in rs])} |"
        )
    marks = sorted({int(m) for r in records for m in r["mv_batch_curve"]})
    print("\nMaxVio_batch (mean over layers and seeds) at training step:\n")
    print("| arm | " + " | ".join(str(m) for m in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for arm in arms:
        rs = [r for r in records if r["arm"] == arm]
        cells = []
        for m in marks:
            v = [r["mv_batch_curve"].get(str(m), r["mv_batch_curve"].get(m)) for r in rs]
            v = [x for x in v if x is not None]
            cells.append(f"{np.mean(v):.2f}" if v else "-")
        print(f"| {rs[0]['label']} | " + " | ".join(cells) + " |")


def part_lm(quick, seeds=None, arms=None, steps=None, size="cpu", json_path=None):
    steps = steps or (40 if quick else 300)
    seeds = seeds or ([0] if quick else [0, 1, 2])
    arms = arms or LM_DEFAULT
    unknown = set(arms) - set(LM_ARMS)
    if unknown:
        raise SystemExit(f"unknown LM arms {sorted(unknown)}; choose from {list(LM_ARMS)}")
    data = stdlib_corpus(300_000 if quick else (4_000_000 if size == "cpu" else 16_000_000))
    n_eval = 64 if quick else 512
    print(
        f"\n## Tiny MoE LM on stdlib sources ({len(data['train'])} train bytes, "
        f"{len(data['val'])} val bytes; size {size}, {steps} steps, seeds {seeds})\n",
        flush=True,
    )
    records = []
    for arm in arms:
        for seed in seeds:
            r = run_lm(arm, seed, data, steps, size, n_eval)
            records.append(r)
            print(
                f"  {r['label']} seed {seed}: val PPL {r['val_ppl']:.3f}, MaxVio_global "
                f"{np.mean(r['mv_global']):.3f} (train text {np.mean(r['mv_global_train']):.3f}),"
                f" batch {r['mv_batch_last50']:.3f}; {r['train_s']:.0f} s",
                flush=True,
            )
            if json_path is not None:
                json_path.write_text(json.dumps(records, indent=1))
    print_lm_tables(records)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--part", choices=("synthetic", "lm", "all"), default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="LM seeds (0 1 2)")
    ap.add_argument("--arms", nargs="+", default=None, help=f"LM arms {list(LM_ARMS)}")
    ap.add_argument("--steps", type=int, default=None, help="LM training steps (300)")
    ap.add_argument("--size", choices=list(LM_SIZES), default="cpu", help="LM size")
    ap.add_argument("--json", type=pathlib.Path, default=None, help="LM per-run records")
    ap.add_argument("--merge", type=pathlib.Path, nargs="+", default=None, help="LM tables")
    ap.add_argument("--figures", type=pathlib.Path, default=None, help="synthetic-part PNGs")
    args = ap.parse_args()
    if args.merge:
        print_lm_tables([r for p in args.merge for r in json.loads(p.read_text())])
        return
    t0 = time.time()
    if args.part in ("synthetic", "all"):
        part_synthetic(args.quick, args.figures)
    if args.part in ("lm", "all"):
        part_lm(args.quick, args.seeds, args.arms, args.steps, args.size, args.json)
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
