"""Type-II maximum likelihood through the neural-tangents kernel (note section 7, ICLR).

Minimises :math:`-\\ln p(Y)/N` over log ``W_std``, log ``b_std``, log ``noise`` and the
log prior parameters (``alpha``, ``beta`` of the inverse gamma, or the constant ``lv``)
with optax L-BFGS or Adam. The loss and the optimiser steps are module-level jitted
functions with only the network structure static, so refits never recompile.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from gp.kernels import preset_kernel
from gp.posterior import constant_log_marginal, gp_statistics, student_t_log_marginal

__all__ = ["BOUNDS", "Type2Result", "fit_type2", "negative_log_marginal"]

#: Box for each hyperparameter; the optimiser works on an unconstrained u with
#: p = lo * (hi / lo) ** sigmoid(u), so it cannot run off along the W_std / beta ridge
#: (a ReLU kernel scales like W_std^(2L), note section 2 "scale coupling").
BOUNDS = {
    "W_std": (0.1, 10.0),
    "b_std": (1e-4, 10.0),
    "noise": (1e-8, 10.0),
    "alpha": (0.05, 1e3),
    "beta": (1e-4, 1e4),
    "value": (1e-4, 1e4),
}


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
    ``"inverse_gamma"`` (keys ``alpha``, ``beta``) or ``"constant"`` (key ``value``).
    """
    p = _to_natural(log_params)
    if fit_kernel:
        k = preset_kernel(
            data,
            None,
            p["W_std"],
            p["b_std"],
            architecture=architecture,
            depth=depth,
            activation=activation,
            get="nngp",
        )
    else:
        k = data
    stats = gp_statistics(k, y, p["noise"])
    if prior_kind == "inverse_gamma":
        lml = student_t_log_marginal(stats, p["alpha"], p["beta"])
    else:
        lml = constant_log_marginal(stats, p["value"])
    return -lml / stats.n_obs


@partial(jax.jit, static_argnames=(*_STATIC, "optimizer"))
def _step(log_params, opt_state, data, y, lr, *, optimizer, **static):
    def loss_fn(q):
        return negative_log_marginal(q, data, y, **static)

    if optimizer == "lbfgs":
        opt = optax.lbfgs()
        value, grad = optax.value_and_grad_from_state(loss_fn)(log_params, state=opt_state)
        updates, opt_state = opt.update(
            grad, opt_state, log_params, value=value, grad=grad, value_fn=loss_fn
        )
    else:
        opt = optax.adam(lr)
        value, grad = jax.value_and_grad(loss_fn)(log_params)
        updates, opt_state = opt.update(grad, opt_state, log_params)
    return optax.apply_updates(log_params, updates), opt_state, value


def fit_type2(
    init_params: dict,
    data,
    y,
    *,
    architecture: str = "mlp",
    depth: int = 2,
    activation: str = "relu",
    prior_kind: str = "inverse_gamma",
    fit_kernel: bool = True,
    optimizer: str = "lbfgs",
    max_iter: int = 100,
    learning_rate: float = 1e-2,
    tol: float = 1e-9,
    verbose: int = 0,
) -> Type2Result:
    """Run the optimiser (call inside :func:`mixtures.base.x64_scope`).

    Parameters
    ----------
    init_params : dict of str to float
        Positive starting values (``W_std``, ``b_std`` when ``fit_kernel``; ``noise``;
        ``alpha``/``beta`` or ``value``).
    optimizer : {"lbfgs", "adam"}
    max_iter : int
        Maximum optimiser steps; stops earlier when the loss changes by less than ``tol``.
    verbose : int
        ``> 0`` shows a tqdm progress bar.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs', 'adam' or None; got {optimizer!r}.")
    static = dict(
        architecture=architecture,
        depth=depth,
        activation=activation,
        prior_kind=prior_kind,
        fit_kernel=fit_kernel,
    )
    log_params = _to_unconstrained(init_params)
    opt = optax.lbfgs() if optimizer == "lbfgs" else optax.adam(learning_rate)
    opt_state = opt.init(log_params)
    data = jnp.asarray(data)
    y = jnp.asarray(y)
    lr = jnp.asarray(learning_rate, jnp.float64)
    losses = []
    best = (np.inf, log_params)
    n_iter = 0
    for n_iter in tqdm(  # noqa: B007 (reported after the loop)
        range(1, max_iter + 1), disable=verbose <= 0, desc="type-II ML"
    ):
        new_params, opt_state, value = _step(
            log_params, opt_state, data, y, lr, optimizer=optimizer, **static
        )
        value = float(value)
        if not np.isfinite(value):
            break
        losses.append(value)
        if value < best[0]:
            best = (value, log_params)
        log_params = new_params
        if len(losses) > 1 and abs(losses[-2] - losses[-1]) < tol:
            break
    final = float(negative_log_marginal(log_params, data, y, **static))
    if np.isfinite(final) and final <= best[0]:
        best = (final, log_params)
    params = {k: float(v) for k, v in _to_natural(best[1]).items()}
    return Type2Result(params=params, losses=np.asarray(losses), n_iter=n_iter)
