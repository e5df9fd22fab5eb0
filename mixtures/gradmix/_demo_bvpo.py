"""Demo: exact MSE of trace / empty-trace / mixed preference gradients on the BVPO toy."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from mixtures.gradmix import mixing_mse, toy

__all__ = ["run_demo"]


def run_demo(output_dir: pathlib.Path, verbose: int = 1) -> dict[str, float]:
    """Exact and Monte Carlo MSE(alpha) at theta_ref and after 60 GD steps; alpha*(n).

    Writes ``bvpo_mse_curves.png`` into ``output_dir`` and returns the key metrics.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    world = toy.make_world()
    moved = toy.gradient_descent(world, n_steps=60, step_size=2.0)
    points = {"theta_ref": world.theta_ref, "moved": moved}
    grid = np.linspace(0.0, 1.0, 101)
    ns = np.array([1, 4, 16, 64, 256, 1024])
    metrics: dict[str, float] = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, theta in points.items():
        m = toy.exact_moments(world, theta)
        s = toy.sample_gradients(world, theta, jax.random.PRNGKey(0), 4000)
        err = np.sum((m.alpha * s.grads_t + (1 - m.alpha) * s.grads_e - m.mu) ** 2, axis=1)
        metrics[f"{name}_alpha_star"] = float(m.alpha)
        metrics[f"{name}_mse_alpha_star"] = float(m.mse_alpha)
        metrics[f"{name}_mse_trace"] = float(m.mse_t)
        metrics[f"{name}_mse_empty"] = float(m.mse_e)
        metrics[f"{name}_mse_half"] = float(mixing_mse(0.5, m.mse_t, m.mse_e, m.cross))
        metrics[f"{name}_mc_z"] = float(
            (err.mean() - m.mse_alpha) / (err.std(ddof=1) / np.sqrt(len(err)))
        )
        axes[0].plot(grid, mixing_mse(grid, m.mse_t, m.mse_e, m.cross), label=name)
        axes[0].plot([m.alpha], [m.mse_alpha], "k*")
        alphas = [float(toy.exact_moments(world, theta, n).alpha) for n in ns]
        axes[1].semilogx(ns, alphas, "o-", label=name)
    axes[0].axvline(0.5, color="r", ls=":", label="alpha = 0.5 (paper)")
    axes[0].set(xlabel="alpha", ylabel="exact MSE(alpha)", yscale="log")
    axes[1].set(xlabel="batch size n", ylabel="alpha*(n)")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "bvpo_mse_curves.png", dpi=100)
    plt.close(fig)
    if verbose:
        for key, value in metrics.items():
            print(f"{key:28s} {value:.4f}")
    return metrics
