"""Build notebooks/mixture_of_experts.ipynb (run from the repository root, then execute it
with ``python notebooks/_build/execute.py notebooks/mixture_of_experts.ipynb``)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

from _cells import code, md, write


md(r"""
# Mixture-of-experts layers: routing, loss-free balancing, THOR

A mixture-of-experts (MoE) layer replaces one feed-forward block by $N$ parallel "experts" and a
*router* that sends each token to a few of them (Shazeer et al., 2017). Only the chosen experts
run, so capacity grows with $N$ while the compute per token stays that of $k$ experts. The
difficulty is balance: a learned router tends to favour a few experts, which then overflow while
the others idle.

`mixtures.experts` implements an MoE feed-forward layer as pure functions, `init_moe` and
`apply_moe`, with three routers:

* `"topk"`: softmax or sigmoid gate, top-$k$ experts per token, a capacity limit that drops
  overflowing tokens, and the auxiliary balancing loss of the Switch Transformer (Fedus, Zoph &
  Shazeer, 2022), $L_{aux} = \alpha \frac{N}{kT}\sum_i \mathrm{count}_i P_i$ (tokens routed to
  expert $i$ times its mean gate probability);
* `"loss_free"`: top-$k$ on $s + b$ with a per-expert bias $b$ that only affects *which*
  experts are chosen, while the gate weights use the unbiased scores $s$. The bias is updated
  outside the gradient by `AuxLossFreeBalancer`, with the sign rule of Wang et al. (2024) or a
  dual subgradient step (Han & Zhong, 2025);
* `"random"`: THOR (Zuo et al., 2022): one expert drawn uniformly at random per layer and
  forward pass, with no router at all, trained on two passes with `thor_loss` (cross-entropy
  plus a consistency term between the two passes).

The notebook runs on a CPU in under a minute.
""")

md(r"""
## A skewed router

To study balancing in isolation we freeze the router: a matrix of sigmoid scores for $T = 512$
tokens and $N = 16$ experts whose means decay like a Zipf law, so expert 0 is preferred by most
tokens. Each token goes to $k = 2$ experts; perfect balance means every expert receives
$\bar L = kT/N = 64$ tokens.
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
## Routing histograms: plain top-k against the loss-free bias

Plain top-2 routing on these scores piles the tokens onto the first experts. The sign rule of
Wang et al. (2024) adjusts the biases after every batch,
$b_i \leftarrow b_i + u\,\mathrm{sign}(\bar L - \mathrm{load}_i)$: under-loaded experts become
more attractive, over-loaded ones less. Balance is measured by
$\mathrm{MaxVio} = (\max_i \mathrm{load}_i - \bar L)/\bar L$, the relative overload of the
busiest expert (0 is perfect balance).

For reference, `solve_balanced_assignment` solves the *balanced assignment* linear program
exactly (SciPy's HiGHS): maximise the total routed score subject to every token using $k$
experts and every expert receiving exactly $\bar L$ tokens. The difference between the
unconstrained top-$k$ score and this optimum is the *price of balance*: how much router score
any perfectly balanced routing must give up.
""")

code(r"""
G = jnp.asarray(scores, jnp.float32)

def run(rule, schedule, rate, n_steps=600):
    # Repeated balancer updates on the frozen scores; returns the loads and D(b) per update.
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
ax[1].bar(range(N), loads[-1]); ax[1].set_title(f"loss-free (600 updates), MaxVio={max_violation(loads[-1]):.2f}")
for a in ax:
    a.axhline(K * T / N, color="k", ls="--"); a.set_xlabel("expert"); a.set_ylabel("tokens")
plt.tight_layout(); plt.show()
print(f"plain top-2: MaxVio {float(max_violation(loads[0])):.2f}; after 600 sign-rule updates: "
      f"{float(max_violation(loads[-1])):.2f}")
print("balanced LP optimum", round(lp.objective, 3), "| price of balance", round(lp.unconstrained - lp.objective, 3))
""")

md(r"""
**How to read it.** The dashed line is the balanced load $\bar L = 64$. Without a bias the first
expert receives several times its share; after 600 bias updates every bar sits close to the line.
Only the *choice* of experts changed, not the router, which is the point of loss-free balancing:
no auxiliary loss gradient competes with the task loss.

## Convergence of the bias updates, and a certificate

Left: MaxVio over the updates for the sign rule with three step sizes $u$, and for the dual
subgradient step $b_i \leftarrow b_i + \varepsilon_n(\bar L - \mathrm{load}_i)$ with a
decreasing step $\varepsilon_n = 10^{-2}/\sqrt n$. Right: the *dual gap*
$D(b_n) - \mathrm{OPT}_{LP}$. Viewing the biases as Lagrange multipliers of the load
constraints, $D(b)$ is the dual function of the LP, and weak duality guarantees
$D(b) \ge \mathrm{OPT}_{LP}$ for every bias vector: a small gap certifies that the biased
routing is close to the best balanced one.
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
ax[1].set_yscale("log"); ax[1].set_xlabel("update n"); ax[1].set_ylabel("D(b_n) - OPT_LP")
plt.tight_layout(); plt.show()
""")

md(r"""
**How to read it.** The sign rule moves every bias by a fixed $u$ per update: a small $u$
converges slowly, a large $u$ quickly but then oscillates around balance at a level set by $u$.
The dual step with a decreasing step size keeps improving, at the cost of a slower start. The
dual gap on the right shrinks with MaxVio on the left.

## THOR against Switch on a small classification task

Finally, a whole model: an MLP with one MoE layer of 4 experts on scikit-learn's handwritten
digits (8×8 images, 10 classes; 1400 images for training, 397 for testing), trained with Adam
for 400 steps.

* **Switch**: a learned top-1 router with capacity factor 1.25 and auxiliary loss weight
  $10^{-2}$.
* **THOR**: a random expert per pass; the loss is the cross-entropy of two passes with
  different random experts plus $\alpha = 1$ times their symmetric KL divergence, which pushes
  the experts to agree. At test time it can average the experts' outputs (`inference="mean"`) or
  use one random expert per example (`inference="sequence"`).

With one seed and a few hundred steps this is an illustration, not a benchmark
(`benchmarks/thor_reproduce.py` compares them properly).
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
    return (h + y) @ p["out"], aux     # residual connection around the MoE layer

def train(moe, thor_alpha=None, steps=400, seed=0):
    opt = optax.adam(3e-3)
    p = init(jax.random.PRNGKey(seed), moe)

    def loss(p, xb, yb, key):
        ka, kb = jax.random.split(key)
        la, aux = forward(p, xb, moe, ka, True)
        if thor_alpha is None:        # Switch: cross-entropy + auxiliary balancing loss
            ce = optax.softmax_cross_entropy_with_integer_labels(la, yb).mean()
            return ce + 1e-2 * aux.aux_loss
        lb, _ = forward(p, xb, moe, kb, True)   # THOR: a second pass, other random experts
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
acc_sw, aux_sw = accuracy(p_sw, switch._replace(capacity_factor=None))  # no token dropping at test time
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
**How to read it.** Both models reach about 98 % test accuracy on this easy task. The Switch
histogram shows how unevenly the learned router uses the experts on the test set, even with the
auxiliary loss. THOR needs no router and no balancing at all, since every expert is chosen
equally often by construction. Its accuracy with a single random expert per example is close to
the accuracy of the averaged experts and varies little between random draws: the consistency
term has made the experts nearly interchangeable, which is what lets THOR use one expert per
example at test time.

**References.** N. Shazeer et al. (2017), *Outrageously large neural networks: the sparsely-gated
mixture-of-experts layer*, ICLR. · W. Fedus, B. Zoph, N. Shazeer (2022), *Switch Transformers*,
JMLR. · S. Zuo et al. (2022), *Taming sparsely activated Transformer with stochastic experts*
(THOR), ICLR. · L. Wang et al. (2024), *Auxiliary-loss-free load balancing strategy for
mixture-of-experts*, arXiv:2408.15664. · Han & Zhong (2025), a primal-dual analysis of
auxiliary-loss-free balancing, arXiv:2512.03915.
""")

write("mixture_of_experts.ipynb")
