"""Build notebooks/mixture_of_experts.ipynb (run from the repo root, then execute it)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

import pathlib

import nbformat as nbf

cells = []


def md(text):
    cells.append(nbf.v4.new_markdown_cell(text.strip()))


def code(text):
    cells.append(nbf.v4.new_code_cell(text.strip()))


md(r"""
# Mixture-of-experts layers: routing, loss-free balancing, THOR

`mixtures.experts` implements a mixture-of-experts feed-forward layer as pure `init_moe` /
`apply_moe` functions with three routers:

* `"topk"` — softmax/sigmoid gate, top-k, capacity with token dropping, Switch auxiliary loss
  $L = \alpha N/(KT)\sum_i \text{count}_i P_i$;
* `"loss_free"` — top-k on $s + b$ with gate weights from the *unbiased* $s$; the bias is
  updated outside the gradient by `AuxLossFreeBalancer` (sign rule of Wang et al. 2024, or a
  dual subgradient step, Han & Zhong 2025);
* `"random"` — THOR (Zuo et al., ICLR 2022): one expert drawn uniformly per layer per pass,
  trained with two passes and `thor_loss` (CE + $\alpha$ · symmetric KL).

This notebook runs in well under a minute on a CPU.
""")

code(r"""
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from sklearn.datasets import load_digits

from mixtures.experts import (
    AuxLossFreeBalancer, MoEConfig, apply_moe, dual_objective, init_moe, max_violation,
    solve_balanced_assignment, thor_loss, topk_loads,
)

rng = np.random.default_rng(0)
T, N, K = 512, 16, 2
mu = -0.8 * np.log(np.arange(1, N + 1))                      # Zipf-like skew
scores = 1 / (1 + np.exp(-(mu + 0.5 * rng.standard_normal((T, N)))))
""")

md(r"""
## Routing histograms: plain top-k vs loss-free bias

On a frozen skewed score matrix, plain top-2 sends most tokens to the first experts. The sign
rule $b_i \leftarrow b_i + u\,\mathrm{sign}(\bar L - \mathrm{load}_i)$ moves the biases until the
loads are nearly flat; the exact LP optimum (HiGHS) has all loads equal to $\bar L = KT/N$.
""")

code(r"""
G = jnp.asarray(scores, jnp.float32)

def run(rule, schedule, rate, n_steps=600):
    bal = AuxLossFreeBalancer(rule, schedule)
    def body(s, _):
        loads = topk_loads(G, s.bias, K)
        return bal.update(s, loads), (loads, dual_objective(G, s.bias, K))
    s, (loads, d) = jax.lax.scan(body, bal.init(N, rate), None, length=n_steps)
    return s, np.asarray(loads), np.asarray(d)

lp = solve_balanced_assignment(scores, K)
state, loads, dvals = run("sign", "constant", 1e-3)
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].bar(range(N), loads[0]); ax[0].set_title(f"plain top-2, MaxVio={max_violation(loads[0]):.2f}")
ax[1].bar(range(N), loads[-1]); ax[1].set_title(f"loss-free (600 steps), MaxVio={max_violation(loads[-1]):.2f}")
for a in ax:
    a.axhline(K * T / N, color="k", ls="--"); a.set_xlabel("expert"); a.set_ylabel("tokens")
plt.tight_layout(); plt.show()
print("LP optimum", round(lp.objective, 3), " price of balance UB-OPT", round(lp.unconstrained - lp.objective, 3))
""")

md(r"""
## MaxVio curves and the dual gap

MaxVio$_\text{batch}$ over updates for the sign rule with several rates and for the dual
subgradient step with a $1/\sqrt n$ schedule. Right: the dual gap $D(p_n) - \mathrm{OPT}_{LP}
\ge 0$, an exact certificate for every bias vector (weak duality).
""")

code(r"""
fig, ax = plt.subplots(1, 2, figsize=(11, 3.2))
for rule, sched, rate, lab in [("sign", "constant", 1e-4, "sign u=1e-4"),
                               ("sign", "constant", 1e-3, "sign u=1e-3"),
                               ("sign", "constant", 1e-2, "sign u=1e-2"),
                               ("dual", "inv_sqrt_t", 1e-2, "dual 1e-2/sqrt(n)")]:
    _, ld, d = run(rule, sched, rate)
    ax[0].plot(np.asarray(max_violation(ld)), label=lab)
    ax[1].plot(np.maximum(d - lp.objective, 1e-6), label=lab)
ax[0].set_yscale("log"); ax[0].set_xlabel("update n"); ax[0].set_ylabel("MaxVio_batch"); ax[0].legend()
ax[1].set_yscale("log"); ax[1].set_xlabel("update n"); ax[1].set_ylabel("D(p_n) - OPT_LP")
plt.tight_layout(); plt.show()
""")

md(r"""
## THOR vs Switch on a small classification task

The cheapest sanity check: an MoE MLP (one expert layer, 4 experts) on the scikit-learn
digits. Switch: learned top-1 gate with capacity 1.25 and aux loss $10^{-2}$. THOR: a random
expert per pass, two passes, $\alpha = 1$; evaluated with the mean of the experts and with a
random expert per example. Numbers from one seed and a few hundred steps — an illustration, not
a benchmark (see `benchmarks/thor_reproduce.py`).
""")

code(r"""
X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
perm = np.random.default_rng(0).permutation(len(X))
Xtr, ytr = jnp.asarray(X[perm[:1400]]), jnp.asarray(y[perm[:1400]])
Xte, yte = jnp.asarray(X[perm[1400:]]), np.asarray(y[perm[1400:]])
D, H = 64, 32

def init(key, moe):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"inp": jax.random.normal(k1, (64, D)) / 8, "moe": init_moe(k2, D, H, moe),
            "out": jax.random.normal(k3, (D, 10)) / 8}

def forward(p, x, moe, key, train):
    h = jnp.tanh(x @ p["inp"])
    y, aux = apply_moe(p["moe"], h, moe, key=key, train=train)
    return (h + y) @ p["out"], aux

def train(moe, thor_alpha=None, steps=400, seed=0):
    opt = optax.adam(3e-3)
    p = init(jax.random.PRNGKey(seed), moe)

    def loss(p, xb, yb, key):
        ka, kb = jax.random.split(key)
        la, aux = forward(p, xb, moe, ka, True)
        if thor_alpha is None:
            ce = optax.softmax_cross_entropy_with_integer_labels(la, yb).mean()
            return ce + 1e-2 * aux.aux_loss
        lb, _ = forward(p, xb, moe, kb, True)
        return thor_loss(la, lb, yb, thor_alpha).loss

    @jax.jit
    def step(carry, key):
        p, s = carry
        idx = jax.random.randint(key, (64,), 0, len(Xtr))
        g = jax.grad(loss)(p, Xtr[idx], ytr[idx], jax.random.fold_in(key, 1))
        u, s = opt.update(g, s)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), jax.random.split(jax.random.PRNGKey(seed + 1), steps))
    return p

def accuracy(p, moe, key=None):
    logits, aux = forward(p, Xte, moe, key, False)
    return float(np.mean(np.argmax(logits, -1) == yte)), aux

switch = MoEConfig(n_experts=4, router="topk", k=1, capacity_factor=1.25)
thor = MoEConfig(n_experts=4, router="random", inference="mean")
p_sw = train(switch)
p_th = train(thor, thor_alpha=1.0)
acc_sw, aux_sw = accuracy(p_sw, switch._replace(capacity_factor=None))
acc_mean, _ = accuracy(p_th, thor)
acc_rand = [accuracy(p_th, thor._replace(inference="sequence"), jax.random.PRNGKey(s))[0] for s in range(5)]
print(f"Switch top-1 accuracy           {acc_sw:.3f}  (test MaxVio {float(max_violation(aux_sw.loads)):.2f})")
print(f"THOR, mean of experts           {acc_mean:.3f}")
print(f"THOR, random expert per example {np.mean(acc_rand):.3f} ± {np.std(acc_rand):.3f} (5 draws)")
plt.figure(figsize=(4, 3))
plt.bar(range(4), np.asarray(aux_sw.loads)); plt.title("Switch routing histogram (test)")
plt.xlabel("expert"); plt.ylabel("tokens"); plt.show()
""")

md(r"""
A small spread over random draws and *mean ≈ random* is the evidence that the consistency term
made the experts interchangeable.
""")

nb = nbf.v4.new_notebook()
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
out = pathlib.Path("notebooks/mixture_of_experts.ipynb")
nbf.write(nb, out)
print("wrote", out)
