"""Demo: kinematic GMM forecasting on synthetic bicycle traffic (``mixproc demo``)."""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ["run_demo"]


def run_demo(output_dir: pathlib.Path, verbose: int = 1) -> dict[str, float]:
    """Fit a velocity-formulation forecaster on synthetic traffic and plot its modes.

    Returns
    -------
    dict
        ``min_ade``, ``min_fde``, ``miss_rate``, ``nll`` of the forecaster and
        ``cv_min_ade``, ``cv_min_fde`` of constant velocity on a held-out set.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gmm import KinematicGMMForecaster, constant_velocity_forecast
    from gmm.datasets import make_bicycle_traffic
    from gmm.metrics import min_ade, min_fde, miss_rate, nll

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train = make_bicycle_traffic(800, history=8, horizon=20, random_state=0)
    test = make_bicycle_traffic(300, history=8, horizon=20, random_state=1)
    model = KinematicGMMForecaster(
        n_modes=6, formulation="velocity", hidden_sizes=(64, 64), epochs=20, random_state=0
    ).fit(train.history, train.future)
    probs, means, covs = model.predict_gaussians(test.history)
    cv = constant_velocity_forecast(test.history, 20)
    out = {
        "min_ade": min_ade(test.future, means),
        "min_fde": min_fde(test.future, means),
        "miss_rate": miss_rate(test.future, means),
        "nll": nll(test.future, probs, means, covs),
        "cv_min_ade": min_ade(test.future, cv),
        "cv_min_fde": min_fde(test.future, cv),
    }
    if verbose:
        print("kinematic GMM (velocity, 6 modes) vs constant velocity on synthetic traffic")
        for k, v in out.items():
            print(f"  {k:>10s}: {v:.3f}")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, i in zip(axes, (0, 1, 2)):
        ax.plot(*test.history[i].T, "k.-", label="history")
        ax.plot(*test.future[i].T, "g-", lw=2, label="truth")
        for k in range(means.shape[1]):
            ax.plot(*means[i, k].T, "-", alpha=0.3 + 0.7 * probs[i, k] / probs[i].max())
        ax.set_aspect("equal")
        ax.set_title(f"agent {i}")
    axes[0].legend(loc="best")
    fig.tight_layout()
    fig.savefig(output_dir / "forecasting_modes.png", dpi=80)
    plt.close(fig)
    return {k: float(np.round(v, 6)) for k, v in out.items()}
