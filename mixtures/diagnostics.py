"""ArviZ diagnostics for mixproc fits (the only module that imports ArviZ, and only when
one of its functions is called: ``import mixtures`` does not pay ArviZ's import time).

- :func:`to_inference_data` turns a :class:`~mixtures.inference.NUTSResult` into an
  ``arviz.InferenceData`` with sampler statistics (divergences, acceptance, tree size).
- :func:`summarize` is ``arviz.summary`` with mixproc's defaults.
- :func:`check_convergence` checks split-R-hat, bulk and tail ESS and divergences against
  thresholds and warns with what failed (Vehtari et al., 2021: R-hat < 1.01 and an ESS of
  at least 100 per chain).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np

from mixtures.inference import NUTSResult

__all__ = [
    "ConvergenceReport",
    "MixprocConvergenceWarning",
    "check_convergence",
    "draws_to_inference_data",
    "summarize",
    "to_inference_data",
]


class MixprocConvergenceWarning(UserWarning):
    """An MCMC run failed a convergence check (R-hat, ESS or divergences)."""


class ConvergenceReport(NamedTuple):
    """Outcome of :func:`check_convergence`.

    Attributes
    ----------
    ok : bool
        True when every check passed.
    max_rhat : float
        Largest split-R-hat over all scalar parameters.
    min_ess_bulk, min_ess_tail : float
        Smallest bulk and tail effective sample sizes.
    n_divergent : int
        Number of divergent transitions.
    failures : list of str
        One human-readable line per failed check.
    skipped : list of str
        Scalar parameters left out because their draws are constant (e.g. the weight of a
        one-component mixture): R-hat and ESS are undefined for them.
    """

    ok: bool
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_divergent: int
    failures: list[str]
    skipped: list[str] = []

    def __bool__(self) -> bool:  # ``if check_convergence(idata): ...``
        return self.ok


def to_inference_data(
    result: NUTSResult,
    *,
    coords: dict[str, Any] | None = None,
    dims: dict[str, list[str]] | None = None,
    log_likelihood: dict[str, Any] | None = None,
    observed_data: dict[str, Any] | None = None,
    posterior_predictive: dict[str, Any] | None = None,
):
    """Convert a NUTS result to ``arviz.InferenceData``.

    Parameters
    ----------
    result : NUTSResult
        Output of :func:`mixtures.inference.run_nuts`.
    coords, dims : dict, optional
        ArviZ coordinates and dimension names.
    log_likelihood : dict of str to array of shape (chains, draws, n_obs), optional
        Pointwise log-likelihoods (for ``arviz.loo`` / ``waic``).
    observed_data : dict, optional
        Observed data to store.
    posterior_predictive : dict of str to array of shape (chains, draws, ...), optional
        Replicated data (for ``arviz.plot_ppc``); its draws may be a thinned subset.

    Returns
    -------
    arviz.InferenceData
    """
    posterior = {k: np.asarray(v) for k, v in result.samples.items()}
    sample_stats = {
        "diverging": np.asarray(result.diverging).astype(bool),
        "acceptance_rate": np.asarray(result.accept_prob),
        "n_steps": np.asarray(result.num_steps),
        "energy": np.asarray(result.potential_energy),
    }
    kwargs: dict[str, Any] = {"posterior": posterior, "sample_stats": sample_stats}
    if log_likelihood is not None:
        kwargs["log_likelihood"] = {k: np.asarray(v) for k, v in log_likelihood.items()}
    if observed_data is not None:
        kwargs["observed_data"] = {k: np.asarray(v) for k, v in observed_data.items()}
    if posterior_predictive is not None:
        kwargs["posterior_predictive"] = {k: np.asarray(v) for k, v in posterior_predictive.items()}
    import arviz as az

    return az.from_dict(coords=coords, dims=dims, **kwargs)


def draws_to_inference_data(
    draws: dict[str, Any],
    *,
    log_likelihood: dict[str, Any] | None = None,
    observed_data: dict[str, Any] | None = None,
    posterior_predictive: dict[str, Any] | None = None,
):
    """InferenceData of independent draws (one chain), e.g. from a variational posterior.

    Parameters
    ----------
    draws : dict of str to array of shape (num_draws, ...)
    log_likelihood : dict of str to array of shape (num_draws, n_obs), optional
    observed_data : dict, optional
    posterior_predictive : dict of str to array of shape (num_draws, ...), optional

    Returns
    -------
    arviz.InferenceData
    """
    kwargs: dict[str, Any] = {"posterior": {k: np.asarray(v)[None] for k, v in draws.items()}}
    if log_likelihood is not None:
        kwargs["log_likelihood"] = {k: np.asarray(v)[None] for k, v in log_likelihood.items()}
    if observed_data is not None:
        kwargs["observed_data"] = {k: np.asarray(v) for k, v in observed_data.items()}
    if posterior_predictive is not None:
        kwargs["posterior_predictive"] = {
            k: np.asarray(v)[None] for k, v in posterior_predictive.items()
        }
    import arviz as az

    return az.from_dict(**kwargs)


def summarize(idata, var_names=None, **kwargs):
    """``arviz.summary`` (mean, sd, HDI, MCSE, ESS, R-hat) as a pandas DataFrame."""
    import arviz as az

    kwargs.setdefault("round_to", "none")
    return az.summary(idata, var_names=var_names, **kwargs)


def check_convergence(
    idata,
    *,
    rhat_max: float = 1.01,
    ess_min: float | None = None,
    var_names=None,
    warn: bool = True,
) -> ConvergenceReport:
    """Check an MCMC run's convergence and warn with what failed.

    Parameters
    ----------
    idata : arviz.InferenceData
        Must have a ``posterior`` group with at least two chains for R-hat.
    rhat_max : float, default=1.01
        Largest acceptable rank-normalised split-R-hat.
    ess_min : float, optional
        Smallest acceptable bulk and tail ESS; default 100 per chain.
    var_names : list of str, optional
        Parameters to check (default all).
    warn : bool, default=True
        Issue a :class:`MixprocConvergenceWarning` listing the failures.

    Returns
    -------
    ConvergenceReport
        Truthy when every check passed.
    """
    import arviz as az

    posterior = idata.posterior
    n_chains = int(posterior.sizes["chain"])
    if ess_min is None:
        ess_min = 100.0 * n_chains
    # constant draws give 0/0 inside ArviZ: those parameters are reported as skipped below
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = az.rhat(idata, var_names=var_names) if n_chains >= 2 else None
        ess_bulk = az.ess(idata, var_names=var_names, method="bulk")
        ess_tail = az.ess(idata, var_names=var_names, method="tail")

    failures: list[str] = []

    skipped: list[str] = []
    names = list(idata.posterior.data_vars) if var_names is None else list(var_names)
    for name in names:
        draws = np.asarray(idata.posterior[name])
        flat = draws.reshape(draws.shape[0] * draws.shape[1], -1)
        for j in np.flatnonzero(np.ptp(flat, axis=0) == 0):
            index = np.unravel_index(j, draws.shape[2:]) if draws.ndim > 2 else ()
            skipped.append(f"{name}{_fmt(index)}")

    def _worst(ds, larger_is_worse):
        out = []
        for name in ds.data_vars:
            arr = np.asarray(ds[name])
            flat = arr.ravel()
            if flat.size == 0 or np.all(np.isnan(flat)):  # constant draws: undefined
                continue
            idx = int(np.nanargmax(flat) if larger_is_worse else np.nanargmin(flat))
            out.append((float(flat[idx]), name, np.unravel_index(idx, arr.shape)))
        return out

    max_rhat = -np.inf
    if n_chains >= 2:
        for value, name, index in _worst(rhat, True):
            max_rhat = max(max_rhat, value)
            if not value <= rhat_max:
                failures.append(f"R-hat of {name}{_fmt(index)} is {value:.3f} > {rhat_max}")
    else:
        max_rhat = float("nan")
        failures.append("R-hat needs at least 2 chains; run with num_chains >= 2")
    min_bulk, min_tail = np.inf, np.inf
    for label, ds in (("bulk", ess_bulk), ("tail", ess_tail)):
        for value, name, index in _worst(ds, False):
            if label == "bulk":
                min_bulk = min(min_bulk, value)
            else:
                min_tail = min(min_tail, value)
            if not value >= ess_min:
                failures.append(
                    f"{label} ESS of {name}{_fmt(index)} is {value:.0f} < {ess_min:.0f}"
                )
    n_div = 0
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        n_div = int(np.asarray(idata.sample_stats["diverging"]).sum())
        if n_div > 0:
            failures.append(f"{n_div} divergent transitions")
    report = ConvergenceReport(
        ok=not failures,
        max_rhat=float(max_rhat),
        min_ess_bulk=float(min_bulk),
        min_ess_tail=float(min_tail),
        n_divergent=n_div,
        failures=failures,
        skipped=skipped,
    )
    if failures and warn:
        warnings.warn(
            "MCMC convergence check failed: "
            + "; ".join(failures)
            + ". Run longer chains (num_warmup/num_samples), more chains, or reparameterise."
            + (f" Skipped (constant draws): {', '.join(skipped)}." if skipped else ""),
            MixprocConvergenceWarning,
            stacklevel=2,
        )
    return report


def _fmt(index) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]" if len(index) else ""
