"""Exact reference: the optimal balanced assignment as a linear program (SciPy HiGHS).

.. math::

    \\mathrm{OPT} = \\max_x \\sum_{t,i} \\gamma_{t,i} x_{t,i} \\quad\\text{s.t.}\\quad
    \\sum_i x_{t,i} = K,\\ \\sum_t x_{t,i} = \\bar L = KT/N,\\ 0 \\le x_{t,i} \\le 1

is the relaxed balanced assignment behind the primal-dual view of auxiliary-loss-free
balancing (Han & Zhong 2025, arXiv 2512.03915; this LP form is ours). The constraint matrix
is totally unimodular, so a vertex solution (dual simplex) is integral. The multipliers
``p*`` of the load constraints minimise the dual ``D(p)`` of
:func:`mixtures.experts.dual_objective`, and ``D(p) - OPT >= 0`` certifies any bias vector.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.optimize
import scipy.sparse

__all__ = ["BalancedAssignment", "solve_balanced_assignment"]


class BalancedAssignment(NamedTuple):
    """Result of :func:`solve_balanced_assignment` (NumPy arrays).

    Attributes
    ----------
    assignment : ndarray of shape (n_tokens, n_experts)
        Optimal ``x`` (0/1 up to solver tolerance for a vertex method).
    objective : float
        ``OPT_LP``.
    loads : ndarray of shape (n_experts,)
        ``sum_t x_{t,i}`` (all equal to ``Lbar``).
    dual : ndarray of shape (n_experts,)
        Optimal multipliers ``p*`` of the load constraints, centred to mean zero.
    unconstrained : float
        ``UB = sum_t TopKSum(gamma_t)``; ``UB - OPT`` is the price of balance.
    """

    assignment: np.ndarray
    objective: float
    loads: np.ndarray
    dual: np.ndarray
    unconstrained: float


def solve_balanced_assignment(scores, k: int, *, method: str = "highs-ds") -> BalancedAssignment:
    """Solve the balanced-assignment LP exactly with ``scipy.optimize.linprog`` (HiGHS).

    Parameters
    ----------
    scores : array-like of shape (n_tokens, n_experts)
        ``gamma_{t,i}``.
    k : int
        Experts per token; ``k * n_tokens`` must be divisible by ``n_experts``.
    method : str
        A HiGHS method of ``linprog``; the default dual simplex returns an integral vertex.

    Raises
    ------
    ValueError
        If the scores are not a finite 2-D array, ``k`` is out of range, ``kT/N`` is not an
        integer, or the solver fails.

    Examples
    --------
    >>> res = solve_balanced_assignment([[1.0, 0.0], [0.9, 0.0]], 1)
    >>> res.objective, res.loads.tolist()
    (1.0, [1.0, 1.0])
    """
    g = np.asarray(scores, dtype=np.float64)
    if g.ndim != 2 or not np.all(np.isfinite(g)):
        raise ValueError(
            f"scores must be a finite 2-D array (n_tokens, n_experts); got shape {g.shape}"
            + ("" if g.ndim != 2 else " with non-finite entries")
            + ". Pass the router scores of one batch."
        )
    t, n = g.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n_experts = {n}; got {k}.")
    if (k * t) % n:
        raise ValueError(
            f"the balanced load kT/N = {k}*{t}/{n} is not an integer; choose n_tokens so that "
            "k * n_tokens is a multiple of n_experts."
        )
    lbar = k * t // n
    # variables x_{t,i} at column t*N + i; rows 0..T-1: per-token sums, rows T..T+N-1: loads
    cols = np.arange(t * n)
    rows_tok = np.repeat(np.arange(t), n)
    rows_exp = t + np.tile(np.arange(n), t)
    a_eq = scipy.sparse.csr_matrix(
        (np.ones(2 * t * n), (np.concatenate([rows_tok, rows_exp]), np.concatenate([cols, cols]))),
        shape=(t + n, t * n),
    )
    b_eq = np.concatenate([np.full(t, float(k)), np.full(n, float(lbar))])
    res = scipy.optimize.linprog(
        -g.reshape(-1), A_eq=a_eq, b_eq=b_eq, bounds=(0.0, 1.0), method=method
    )
    if res.status != 0:
        raise ValueError(f"linprog (HiGHS) failed: {res.message}")
    x = res.x.reshape(t, n)
    # linprog minimises -gamma.x; d(-OPT)/d(Lbar_i) = p_i* (envelope theorem on D).
    p = np.asarray(res.eqlin.marginals[t:], dtype=np.float64)
    p = p - p.mean()
    ub = float(np.sort(g, axis=1)[:, n - k :].sum())
    return BalancedAssignment(
        assignment=x, objective=float(-res.fun), loads=x.sum(0), dual=p, unconstrained=ub
    )
