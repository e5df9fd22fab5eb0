"""Build notebooks/bvpo.ipynb (run from the repo root, then execute with nbconvert)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

import pathlib

import nbformat as nbf

cells = []


def md(text):
    cells.append(nbf.v4.new_markdown_cell(text.strip()))


def code(text):
    cells.append(nbf.v4.new_code_cell(text.strip()))


md(r"""
# BVPO: bias–variance optimal mixing of trace and empty-trace gradients

BVPO (Zhu et al., arXiv 2510.05095) trains a reasoning model with the convex combination
$g_c = \alpha g_t + (1-\alpha) g_e$ of

* $g_t$: DPO on the joint log-probability of a sampled reasoning trace and answer (unbiased for
  the marginal DPO gradient $\mu$ at the reference policy, but noisy), and
* $g_e$: DPO on answers generated with an *empty* trace (quieter, but biased).

Theorem 2 gives the MSE-optimal weight $\alpha^\star = \mathrm{clip}_{[0,1]}\,(B-C)/(A+B-2C)$ with
$A = \mathrm{MSE}(g_t)$, $B = \mathrm{MSE}(g_e)$, $C = E[(g_t-\mu)^\top(g_e-\mu)]$. The paper then
uses a fixed $\alpha = 0.5$, which is **not** covered by the theorem.

This notebook uses the exact test bed `mixtures.gradmix.toy` (a softmax policy over 127
enumerable traces, 78 parameters) where $\mu$ and every moment of both estimators are computed by
enumeration.
""")

code(r"""
import jax
import matplotlib.pyplot as plt
import numpy as np

from mixtures.gradmix import (
    PreferenceBatch, bvpo_loss, init_mixing_state, mixing_mse, online_mixing_weight,
    update_mixing_state, toy,
)

world = toy.make_world()                      # the default reference world (gain 0.35)
moved = toy.gradient_descent(world, n_steps=60, step_size=2.0)
m_ref = toy.exact_moments(world, world.theta_ref)
m_mov = toy.exact_moments(world, moved)
for name, m in [("theta_ref", m_ref), ("moved", m_mov)]:
    half = float(mixing_mse(0.5, m.mse_t, m.mse_e, m.cross))
    print(f"{name:9s}  MSE(g_t)={m.mse_t:.4f}  MSE(g_e)={m.mse_e:.4f}  alpha*={m.alpha:.4f}  "
          f"MSE(alpha*)={m.mse_alpha:.4f}  MSE(0.5)={half:.4f}  ||b_t||^2={m.bias_t @ m.bias_t:.2e}")
""")

md(r"""
## MSE against $\alpha$: exact curve and Monte Carlo

The exact curve is the convex quadratic $\alpha^2A + (1-\alpha)^2B + 2\alpha(1-\alpha)C$; the
dots are Monte Carlo averages of $\|g_c - \mu\|^2$ over 10 000 sampled examples (± 2 SE).
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
    ax.axvline(0.5, color="r", ls=":", label="paper: alpha = 0.5")
    ax.axhline(m.mse_e, color="gray", lw=0.8, label="MSE(g_e)")
    ax.set(title=name, xlabel="alpha (weight of g_t)", ylabel="E||g_c - mu||^2", yscale="log")
    ax.legend(fontsize=8)
plt.tight_layout()
""")

md(r"""
At both points $\alpha = 0.5$ is *worse than $g_e$ alone* (1.215 > 0.954 at $\theta_{ref}$;
0.295 vs 0.043 after moving), while $\alpha^\star$ beats both components as Theorem 2 promises.

## $\alpha^\star$ depends on the batch size

Theorem 2 is per example. For a minibatch mean of $n$ examples the covariance terms shrink by
$1/n$ and only bias is left as $n\to\infty$: $\alpha^\star(n)$ rises to 1 at $\theta_{ref}$ (where
$g_t$ is unbiased) and falls to 0 at the moved point (where $g_e$ has the smaller bias).
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
## Online estimate of $\alpha^\star$ from per-example gradients

`update_mixing_state` keeps exponential moving averages of per-example moments (squared gap
$\|\bar g_t - \bar g_e\|^2$ minus its noise, $\mathrm{tr}\,\Sigma_t$, $\mathrm{tr}\,\Sigma_e$, the
paired cross term); `online_mixing_weight` turns them into $\alpha$ for the batch sizes of the
actual update. Bias model (A) assumes $g_t$ unbiased, exact at $\theta_{ref}$.
""")

code(r"""
s = mc["theta_ref"]  # reuse the 10 000 draws above as 100 batches of 64 (paired by prompt)
gt, ge = s.grads_t[:6400].reshape(100, 64, -1), s.grads_e[:6400].reshape(100, 64, -1)
state, path = init_mixing_state(), []
for k in range(100):
    state = update_mixing_state(state, gt[k], ge[k], decay=0.98, paired=True)
    path.append(float(online_mixing_weight(state, 1, 1).alpha))
plt.figure(figsize=(5.5, 3.5))
plt.plot(path, label="online (A), n = 1")
plt.axhline(m_ref.alpha, color="g", ls="--", label="exact alpha*")
plt.xlabel("update (64 examples each)"); plt.ylabel("alpha"); plt.legend(); plt.tight_layout()
print("final online alpha", path[-1], "exact", float(m_ref.alpha))
""")

md(r"""
## SGD on the marginal objective (Theorem 3 setting, $\eta L = 1$, batch 1)

Mean over steps of $\|\nabla L_m(\theta_k)\|^2$ (the left side of Theorem 3) over 100 steps and 2 seeds.
The full comparison with the exact-oracle $\alpha_k^\star$, other step sizes and batch sizes is in
`benchmarks/bvpo_reproduce.py` / `BENCHMARKS.md`: the ordering below is **not** universal.
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
## Using the losses with a real model

The losses take per-example *summed* log-probabilities, so any framework works. The weight is
traced and gradient-stopped: re-estimating it every step does not recompile.
""")

code(r"""
trace_batch = PreferenceBatch(policy_chosen=np.array([-210.3, -180.2]), policy_rejected=np.array([-230.1, -199.0]),
                              reference_chosen=np.array([-211.0, -181.0]), reference_rejected=np.array([-229.5, -198.2]))
empty_batch = PreferenceBatch(np.array([-20.1, -35.2]), np.array([-22.4, -33.0]),
                              np.array([-20.5, -35.0]), np.array([-22.0, -33.1]))
out = bvpo_loss(trace_batch, empty_batch, beta=0.1, alpha=float(path[-1]))
print(out.loss, out.margins_trace, out.margins_empty)
""")

md(r"""
**Summary.** The closed form $\alpha^\star$ is the exact minimiser of the MSE and dominates both
estimators; the paper's fixed $\alpha = 0.5$ does not, because MSE(0.5) $= (A+B+2C)/4$ exceeds
$\min(A, B)$ whenever one estimator is much worse. $\alpha^\star$ also depends on the effective
batch size and moves during training, so it should be estimated online.
""")

nb = nbf.v4.new_notebook()
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
pathlib.Path("notebooks/bvpo.ipynb").write_text(nbf.writes(nb))
print("wrote notebooks/bvpo.ipynb")


if __name__ == "__main__":
    import sys

    if "--execute" in sys.argv:  # nbconvert is not installed; nbclient executes in place
        import nbclient

        path = pathlib.Path("notebooks/bvpo.ipynb")
        nb = nbf.read(path, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
        nbf.write(nb, path)
        print("executed notebooks/bvpo.ipynb")
