"""Build notebooks/bvpo.ipynb (run from the repository root, then execute it with
``python notebooks/_build/execute.py notebooks/bvpo.ipynb``)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

from _cells import code, md, write


md(r"""
# BVPO: bias–variance optimal mixing of trace and empty-trace gradients

A reasoning model answers a prompt $x$ by first generating a reasoning trace $r$ and then an
answer $y$. Preference optimisation such as DPO (Rafailov et al., 2023) compares a chosen and a
rejected answer, but the quantity we care about is the *marginal* probability of an answer,
$\pi(y \mid x) = \sum_r \pi(r, y \mid x)$, which sums over all traces and cannot be computed.
BVPO (Zhu et al., 2025, arXiv:2510.05095) combines two cheap gradient estimators of the
marginal DPO gradient $\mu$:

* $g_t$: DPO on the joint log-probability of a *sampled* trace and the answer. At the reference
  policy it is unbiased for $\mu$, but the random trace makes it noisy;
* $g_e$: DPO on answers generated with an *empty* trace. It has no trace noise, but it estimates
  a different objective, so it is biased.

BVPO trains with the convex combination $g_c = \alpha g_t + (1-\alpha) g_e$. Its Theorem 2 gives
the weight that minimises the mean squared error $E\|g_c - \mu\|^2$,

$$\alpha^\star = \mathrm{clip}_{[0,1]}\,\frac{B-C}{A+B-2C},\qquad
A = \mathrm{MSE}(g_t),\quad B = \mathrm{MSE}(g_e),\quad C = E[(g_t-\mu)^\top(g_e-\mu)],$$

while the experiments of the paper use the fixed weight $\alpha = 0.5$.

`mixtures.gradmix` implements the losses, the closed-form weight and an online estimate of it.
To see every quantity exactly, this notebook uses `mixtures.gradmix.toy`: a small softmax
"reasoning policy" (4 prompts, 5 answers, 127 possible traces, 78 parameters) in which $\mu$ and
all moments of both estimators can be computed by enumerating the traces.
""")

md(r"""
## Exact moments at two policies

We look at the estimators at two parameter vectors: the reference policy $\theta_{ref}$ (the
start of training) and a policy `moved` away from it by 60 steps of exact gradient descent on
the marginal objective (later in training). For each we print $A$, $B$, the optimal weight
$\alpha^\star$, the MSE at $\alpha^\star$ and at $\alpha = 0.5$, and the squared bias
$\|b_t\|^2$ of $g_t$.
""")

code(r"""
import jax
import matplotlib.pyplot as plt
import numpy as np

from mixtures.gradmix import (
    PreferenceBatch, bvpo_loss, init_mixing_state, mixing_mse, online_mixing_weight,
    update_mixing_state, toy,
)

world = toy.make_world()                      # the default reference world
moved = toy.gradient_descent(world, n_steps=60, step_size=2.0)
m_ref = toy.exact_moments(world, world.theta_ref)
m_mov = toy.exact_moments(world, moved)
for name, m in [("theta_ref", m_ref), ("moved", m_mov)]:
    half = float(mixing_mse(0.5, m.mse_t, m.mse_e, m.cross))
    print(f"{name:9s}  MSE(g_t)={m.mse_t:.4f}  MSE(g_e)={m.mse_e:.4f}  alpha*={m.alpha:.4f}  "
          f"MSE(alpha*)={m.mse_alpha:.4f}  MSE(0.5)={half:.4f}  ||b_t||^2={m.bias_t @ m.bias_t:.2e}")
""")

md(r"""
At $\theta_{ref}$ the bias of $g_t$ is zero up to rounding ($4\times10^{-31}$), as the theory
says; at the moved policy the traces are still drawn from the reference posterior, so $g_t$ has
picked up a bias. In both places $g_t$ is much noisier than $g_e$ ($A \gg B$), so the optimal
weight is small: $\alpha^\star = 0.19$ at $\theta_{ref}$ and $0.03$ after moving.

## MSE against $\alpha$: exact curve and Monte Carlo check

$\mathrm{MSE}(\alpha) = \alpha^2A + (1-\alpha)^2B + 2\alpha(1-\alpha)C$ is a convex quadratic in
$\alpha$. The line is this exact curve; the dots are Monte Carlo averages of $\|g_c - \mu\|^2$
over 10 000 sampled examples (error bars: ± 2 standard errors), which confirm it.
""")

code(r"""
grid = np.linspace(0, 1, 101)
alphas_mc = np.array([0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
mc = {}
for ax, (name, theta, m) in zip(axes, [("theta_ref", world.theta_ref, m_ref), ("moved", moved, m_mov)]):
    s = mc[name] = toy.sample_gradients(world, theta, jax.random.PRNGKey(0), 10_000)
    err = np.stack([np.sum((a * s.grads_t + (1 - a) * s.grads_e - m.mu) ** 2, 1) for a in alphas_mc])
    ax.plot(grid, mixing_mse(grid, m.mse_t, m.mse_e, m.cross), label="exact MSE(alpha)")
    ax.errorbar(alphas_mc, err.mean(1), yerr=2 * err.std(1, ddof=1) / np.sqrt(err.shape[1]),
                fmt="o", ms=4, label="Monte Carlo ± 2 SE")
    ax.axvline(m.alpha, color="g", ls="--", label=f"alpha* = {m.alpha:.3f}")
    ax.axvline(0.5, color="r", ls=":", label="fixed alpha = 0.5")
    ax.axhline(m.mse_e, color="gray", lw=0.8, label="MSE(g_e)")
    ax.set(title=name, xlabel="alpha (weight of g_t)", ylabel="E||g_c - mu||^2", yscale="log")
    ax.legend(fontsize=8)
plt.tight_layout()
""")

md(r"""
**How to read it.** The minimum of each curve (green line) lies below both end points: the
optimal mixture beats $g_t$ alone ($\alpha = 1$) and $g_e$ alone ($\alpha = 0$, grey line), as
Theorem 2 promises. The fixed weight $\alpha = 0.5$ (red line) is *worse than $g_e$ alone* in
this world: 1.215 against 0.954 at $\theta_{ref}$, and 0.295 against 0.043 after moving. This is
general: $\mathrm{MSE}(0.5) = (A+B+2C)/4$ exceeds $\min(A, B)$ whenever one estimator is much
noisier than the other.

## $\alpha^\star$ depends on the batch size

Theorem 2 is stated for one example. For the mean of a minibatch of $n$ examples the variance
terms shrink by $1/n$ while the biases stay, so as $n$ grows only bias matters: $\alpha^\star(n)$
rises towards 1 at $\theta_{ref}$ (where $g_t$ is unbiased) and falls towards 0 at the moved
policy (where $g_e$ has the smaller bias). `toy.exact_moments(world, theta, n)` computes the
moments of a batch of $n$.
""")

code(r"""
ns = np.unique(np.round(np.logspace(0, 4, 25)).astype(int))
a_ref = [float(toy.exact_moments(world, world.theta_ref, n).alpha) for n in ns]
a_mov = [float(toy.exact_moments(world, moved, n).alpha) for n in ns]
plt.figure(figsize=(5.5, 3.5))
plt.semilogx(ns, a_ref, "o-", ms=3, label="theta_ref")
plt.semilogx(ns, a_mov, "s-", ms=3, label="moved")
plt.xlabel("effective batch size n"); plt.ylabel("alpha*(n)"); plt.legend(); plt.tight_layout()
""")

md(r"""
## Estimating $\alpha^\star$ online from per-example gradients

In real training $A$, $B$ and $C$ are unknown. `update_mixing_state` keeps exponential moving
averages of per-example moments of the two estimators: the squared gap
$\|\bar g_t - \bar g_e\|^2$ corrected for its noise, the variance traces $\mathrm{tr}\,\Sigma_t$
and $\mathrm{tr}\,\Sigma_e$, and the cross term of pairs computed on the same prompt.
`online_mixing_weight` turns them into $\alpha$ for the batch sizes of the actual update. The
default bias model (`bias_model="unbiased_trace"`) assumes that $g_t$ is unbiased, which holds
exactly at $\theta_{ref}$. Here we feed it the 10 000 draws from above as 100 batches of 64
examples.
""")

code(r"""
s = mc["theta_ref"]
gt, ge = s.grads_t[:6400].reshape(100, 64, -1), s.grads_e[:6400].reshape(100, 64, -1)
state, path = init_mixing_state(), []
for k in range(100):
    state = update_mixing_state(state, gt[k], ge[k], decay=0.98, paired=True)
    path.append(float(online_mixing_weight(state, 1, 1).alpha))
plt.figure(figsize=(5.5, 3.5))
plt.plot(path, label="online estimate, n = 1")
plt.axhline(m_ref.alpha, color="g", ls="--", label="exact alpha*")
plt.xlabel("update (64 examples each)"); plt.ylabel("alpha"); plt.legend(); plt.tight_layout()
print(f"final online alpha {path[-1]:.4f}, exact {float(m_ref.alpha):.4f}")
""")

md(r"""
After a few updates the estimate settles within noise of the exact value.

## SGD on the marginal objective

Theorem 3 of the paper bounds the average squared gradient norm of SGD,
$\frac1K\sum_k \|\nabla L_m(\theta_k)\|^2$, by a term that grows with the MSE of the gradient
estimator. We run plain SGD with step size $1/L$ ($L$ the smoothness constant of $L_m$), batch
size 1, for 100 steps and 2 seeds, with the exact gradient $\mu$, each estimator alone, the
fixed $\alpha = 0.5$ and the online $\alpha^\star$ (re-estimated at every step from a small probe
batch). Left: the running mean of $\|\nabla L_m\|^2$ (lower is better); right: the online weight.
""")

code(r"""
lip = toy.smoothness_constant(world)
runs = {}
for label, kw in [("exact mu", dict(method="exact")), ("g_t", dict(method="trace")),
                  ("g_e", dict(method="empty")), ("alpha = 0.5", dict(method="fixed", alpha=0.5)),
                  ("online alpha*", dict(method="online"))]:
    runs[label] = [toy.run_sgd(world, jax.random.PRNGKey(seed), step_size=1 / lip, n_steps=100, **kw)
                   for seed in range(2)]
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for label, rs in runs.items():
    g = np.mean([r.grad_sq_norm for r in rs], 0)
    axes[0].semilogy(np.cumsum(g) / np.arange(1, len(g) + 1), label=label)
    print(f"{label:14s} mean ||grad||^2 = {np.mean([r.grad_sq_norm.mean() for r in rs]):.2e}   "
          f"final L_m = {np.mean([r.objective[-1] for r in rs]):.4f}")
axes[0].set(xlabel="step k", ylabel="running mean of ||grad L_m||^2"); axes[0].legend(fontsize=8)
axes[1].plot(np.mean([r.alpha for r in runs["online alpha*"]], 0))
axes[1].set(xlabel="step k", ylabel="online alpha_k (mean over seeds)")
plt.tight_layout()
""")

md(r"""
**How to read it.** The exact gradient sets the floor. Among the estimators, the online
$\alpha^\star$ gives the smallest mean squared gradient norm, ahead of $g_e$ alone, the fixed
$\alpha = 0.5$ and $g_t$ alone, in line with the MSE ordering above. The mean squared gradient
norm (the quantity Theorem 3 bounds) and the final objective need not rank the methods the same
way: here $\alpha = 0.5$ reaches a lower final objective than the online weight. These are two
seeds and one step size on a toy problem; `benchmarks/bvpo_reproduce.py` runs the comparison
over more seeds, step sizes and batch sizes, where the ordering is not always the same.

## Using the losses with a real model

`bvpo_loss` takes per-example *summed* log-probabilities (policy and reference, chosen and
rejected), so it works with any model that can score sequences. Below, two preference pairs with
reasoning traces and two without; the weight is the online estimate from above. It is traced and
excluded from the gradient, so re-estimating it at every step does not recompile the training
step. The result holds the combined loss and the DPO margins
$\beta[(\log\pi - \log\pi_{ref})_{chosen} - (\log\pi - \log\pi_{ref})_{rejected}]$ of each pair.
""")

code(r"""
trace_batch = PreferenceBatch(policy_chosen=np.array([-210.3, -180.2]), policy_rejected=np.array([-230.1, -199.0]),
                              reference_chosen=np.array([-211.0, -181.0]), reference_rejected=np.array([-229.5, -198.2]))
empty_batch = PreferenceBatch(np.array([-20.1, -35.2]), np.array([-22.4, -33.0]),
                              np.array([-20.5, -35.0]), np.array([-22.0, -33.1]))
out = bvpo_loss(trace_batch, empty_batch, beta=0.1, alpha=float(path[-1]))
print("loss", out.loss, "| trace margins", out.margins_trace, "| empty-trace margins", out.margins_empty)
""")

md(r"""
**Summary.** The closed-form $\alpha^\star$ is the exact minimiser of the MSE of the mixed
gradient and beats both estimators; a fixed $\alpha = 0.5$ does not, because it ignores how
noisy $g_t$ is. Since $\alpha^\star$ depends on the batch size and changes during training, it
should be estimated online, which the running-moment estimator does accurately from the
per-example gradients that training computes anyway.

**References.** R. Rafailov, A. Sharma, E. Mitchell, S. Ermon, C. D. Manning, C. Finn (2023),
*Direct Preference Optimization: your language model is secretly a reward model*, NeurIPS. ·
Zhu et al. (2025), *From noisy traces to stable gradients: bias–variance optimized preference
optimization for aligning large reasoning models* (BVPO), arXiv:2510.05095.
""")

write("bvpo.ipynb")
