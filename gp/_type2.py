"""Type-II maximum likelihood through the neural-tangents kernel.

Minimises :math:`-\\ln p(Y)/N` over log ``W_std``, log ``b_std``, log ``noise`` and the
log prior parameters (``alpha``, ``beta`` of the inverse gamma, the constant ``lv``, or
Burr XII's ``c``, ``d``) with SciPy L-BFGS-B or optax Adam. Priors without a closed form
use the differentiable quadrature marginal likelihood
(:func:`gp.posterior.quadrature_log_marginal`); a generic NumPyro prior keeps its own
parameters fixed and only the kernel and noise are fitted. Both optimisers call one
module-level jitted value-and-gradient with only the network structure static, so refits
never recompile. The official code of Lee et al. (ICLR 2022) selects its hyperparameters
the same way, by minimising :math:`-\\ln p(Y)/N` with Adam.

References
----------
H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian Processes",
ICLR 2022.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from tqdm.auto import tqdm

from gp.kernels import preset_kernel
from gp.posterior import (
    constant_log_marginal,
    gp_statistics,
    quadrature_log_marginal,
    student_t_log_marginal,
)
from mixtures.distributions import BurrXII

__all__ = [
    "BOUNDS",
    "PRIOR_KINDS",
    "Type2Result",
    "fit_type2",
    "negative_log_marginal",
    "training_kernel",
]

#: Box for each hyperparameter; the optimiser works on an unconstrained u with
#: p = lo * (hi / lo) ** sigmoid(u), so it cannot run off along the W_std / beta ridge
#: (a ReLU kernel scales like W_std^(2L), which trades off against the prior's scale).
BOUNDS = {
    "W_std": (0.1, 10.0),
    "b_std": (1e-4, 10.0),
    "noise": (1e-8, 10.0),
    "alpha": (0.05, 1e3),
    "beta": (1e-4, 1e4),
    "value": (1e-4, 1e4),
    "c": (0.05, 100.0),
    "d": (0.05, 100.0),
}

#: ``prior_kind`` values: closed forms, Burr XII (``c``, ``d`` fitted by quadrature) and
#: any other prior (passed as ``prior``, its parameters fixed, quadrature).
PRIOR_KINDS = ("inverse_gamma", "constant", "burr12", "other")


def _to_natural(u: dict) -> dict:
    return {
        k: BOUNDS[k][0] * (BOUNDS[k][1] / BOUNDS[k][0]) ** jax.nn.sigmoid(v) for k, v in u.items()
    }


def _to_unconstrained(p: dict) -> dict:
    out = {}
    for k, v in p.items():
        lo, hi = BOUNDS[k]
        frac = (np.log(np.clip(v, lo * 1.0001, hi / 1.0001)) - np.log(lo)) / np.log(hi / lo)
        out[k] = jnp.asarray(np.log(frac / (1 - frac)), jnp.float64)
    return out


def training_kernel(data, params, rebuild, architecture, depth, activation):
    """The NNGP training kernel: rebuilt from ``params["W_std"]``/``params["b_std"]`` when
    ``rebuild`` (``data`` are the inputs), else ``data`` is the fixed kernel matrix.

    Shared by type-II fitting and the NUTS model over the hyperparameters, so both
    differentiate through the same neural-tangents kernel.
    """
    if not rebuild:
        return data
    return preset_kernel(
        data,
        None,
        params["W_std"],
        params["b_std"],
        architecture=architecture,
        depth=depth,
        activation=activation,
        get="nngp",
    )


class Type2Result(NamedTuple):
    """Optimised hyperparameters (natural scale) and the loss trace."""

    params: dict
    losses: np.ndarray
    n_iter: int


_STATIC = ("architecture", "depth", "activation", "prior_kind", "fit_kernel")


@partial(jax.jit, static_argnames=_STATIC)
def negative_log_marginal(
    log_params: dict,
    data: jax.Array,
    y: jax.Array,
    prior=None,
    *,
    architecture: str,
    depth: int,
    activation: str,
    prior_kind: str,
    fit_kernel: bool,
) -> jax.Array:
    r""":math:`-\ln p(Y)/N` as a function of the unconstrained hyperparameters (see BOUNDS).

    ``data`` is the training inputs when ``fit_kernel`` (the kernel is rebuilt from
    ``W_std``/``b_std``) and a fixed kernel matrix otherwise. ``prior_kind`` is
    ``"inverse_gamma"`` (keys ``alpha``, ``beta``; closed form), ``"constant"`` (key
    ``value``; closed form), ``"burr12"`` (keys ``c``, ``d``; ``prior`` supplies the fixed
    scale, default 1; quadrature) or ``"other"`` (``prior`` is any positive NumPyro
    distribution with traceable ``log_prob``, kept fixed; quadrature).
    """
    p = _to_natural(log_params)
    k = training_kernel(data, p, fit_kernel, architecture, depth, activation)
    stats = gp_statistics(k, y, p["noise"])
    if prior_kind == "inverse_gamma":
        lml = student_t_log_marginal(stats, p["alpha"], p["beta"])
    elif prior_kind == "constant":
        lml = constant_log_marginal(stats, p["value"])
    elif prior_kind == "burr12":
        scale = 1.0 if prior is None else prior.scale
        lml = quadrature_log_marginal(stats, BurrXII(p["c"], p["d"], scale))
    else:
        lml = quadrature_log_marginal(stats, prior)
    return -lml / stats.n_obs


_value_and_grad = jax.jit(
    jax.value_and_grad(negative_log_marginal.__wrapped__), static_argnames=_STATIC
)


@jax.jit
def _adam_update(log_params, grad, opt_state, lr):
    updates, opt_state = optax.adam(lr).update(grad, opt_state, log_params)
    return optax.apply_updates(log_params, updates), opt_state


def fit_type2(
    init_params: dict,
    data,
    y,
    *,
    architecture: str = "mlp",
    depth: int = 2,
    activation: str = "relu",
    prior_kind: str = "inverse_gamma",
    prior=None,
    fit_kernel: bool = True,
    optimizer: str = "lbfgs",
    max_iter: int = 100,
    learning_rate: float = 1e-2,
    tol: float = 1e-9,
    verbose: int = 0,
) -> Type2Result:
    """Run the optimiser (call inside :func:`mixtures.base.x64_scope`).

    Both optimisers call one jitted value-and-gradient of :func:`negative_log_marginal`
    (compiled once per network structure and data shape): ``"lbfgs"`` is SciPy's L-BFGS-B
    on the unconstrained parameters, ``"adam"`` is optax Adam.

    Parameters
    ----------
    init_params : dict of str to float
        Positive starting values (``W_std``, ``b_std`` when ``fit_kernel``; ``noise``;
        ``alpha``/``beta``, ``value`` or ``c``/``d`` by ``prior_kind``).
    prior_kind : {"inverse_gamma", "constant", "burr12", "other"}
        See :func:`negative_log_marginal`; ``prior`` is the NumPyro prior for
        ``"burr12"`` (its scale) and ``"other"``.
    optimizer : {"lbfgs", "adam"}
    max_iter : int
        Maximum optimiser iterations; Adam stops earlier when the loss changes by less
        than ``tol``, L-BFGS-B by its own ``ftol = tol``.
    verbose : int
        ``> 0`` shows a tqdm progress bar.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs', 'adam' or None; got {optimizer!r}.")
    if prior_kind not in PRIOR_KINDS:
        raise ValueError(f"prior_kind must be one of {PRIOR_KINDS}; got {prior_kind!r}.")
    static = dict(
        architecture=architecture,
        depth=depth,
        activation=activation,
        prior_kind=prior_kind,
        fit_kernel=fit_kernel,
    )
    log_params = _to_unconstrained(init_params)
    names = sorted(log_params)
    data = jnp.asarray(data)
    y = jnp.asarray(y)
    losses = []
    best = [np.inf, log_params]

    def value_grad(p):
        value, grad = _value_and_grad(p, data, y, prior, **static)
        value = float(value)
        if np.isfinite(value) and value < best[0]:
            best[0], best[1] = value, p
        return value, grad

    bar = tqdm(total=max_iter, disable=verbose <= 0, desc="type-II ML")
    if optimizer == "lbfgs":

        def fun(u):
            p = {k: jnp.asarray(v, jnp.float64) for k, v in zip(names, u, strict=True)}
            value, grad = value_grad(p)
            if not np.isfinite(value):
                return np.inf, np.zeros_like(u)
            return value, np.array([float(grad[k]) for k in names])

        def callback(intermediate_result):
            losses.append(float(intermediate_result.fun))
            bar.update()

        u0 = np.array([float(log_params[k]) for k in names])
        losses.append(fun(u0)[0])
        res = scipy.optimize.minimize(
            fun,
            u0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-10},
        )
        n_iter = int(res.nit)
    else:
        opt_state = optax.adam(learning_rate).init(log_params)
        lr = jnp.asarray(learning_rate, jnp.float64)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
            value, grad = value_grad(log_params)
            if not np.isfinite(value):
                break
            losses.append(value)
            bar.update()
            log_params, opt_state = _adam_update(log_params, grad, opt_state, lr)
            if len(losses) > 1 and abs(losses[-2] - losses[-1]) < tol:
                break
        else:
            value_grad(log_params)  # score the last update too
    bar.close()
    params = {k: float(v) for k, v in _to_natural(best[1]).items()}
    return Type2Result(params=params, losses=np.asarray(losses), n_iter=n_iter)
