"""Auxiliary-loss-free balancing: dual view, LP reference, MaxVio (arXiv 2408.15664, 2512.03915)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from mixtures.base import x64_scope
from mixtures.experts import (
    AuxLossFreeBalancer,
    MoEConfig,
    apply_moe,
    dual_objective,
    dual_step,
    init_moe,
    lagrangian,
    max_violation,
    route_topk,
    sign_rule_step_size,
    solve_balanced_assignment,
    topk_assignment,
    topk_loads,
)


def skewed_scores(rng, t, n, c=0.8, sigma=0.5):
    """Sigmoid scores with Zipf-like expert means ``mu_i = -c log(i + 1)``."""
    mu = -c * np.log(np.arange(1, n + 1))
    return 1.0 / (1.0 + np.exp(-(mu + sigma * rng.standard_normal((t, n)))))


def test_max_violation_equals_definition():
    rng = np.random.default_rng(0)
    loads = rng.integers(0, 50, size=(7, 9)).astype(float)
    ref = (loads.max(1) - loads.mean(1)) / loads.mean(1)  # ALF-LB Eq. 4 by hand
    # exact up to float32 rounding of one division (rel 1e-6)
    np.testing.assert_allclose(np.asarray(max_violation(jnp.asarray(loads))), ref, rtol=1e-6)
    assert float(max_violation(jnp.full(4, 3.0))) == 0.0
    assert float(max_violation(jnp.zeros(4))) == 0.0


def test_sign_rule_is_dual_step_with_per_expert_step_size():
    # b_i += u sign(e_i) == p_i + eps_i e_i, eps_i = u / abs(e_i), e_i = Lbar - load_i
    rng = np.random.default_rng(1)
    bal = AuxLossFreeBalancer("sign")
    u = 1e-3
    for _ in range(5):
        loads = jnp.asarray(rng.integers(0, 40, size=16).astype(np.float32))
        state = bal.init(16, rate=u)
        state = state._replace(bias=jnp.asarray(rng.normal(size=16), jnp.float32))
        new = bal.update(state, loads)
        via_dual = dual_step(state.bias, loads, sign_rule_step_size(loads, u))
        # identical arithmetic up to one float32 rounding of |e| * (u/|e|): 1e-7 absolute
        np.testing.assert_allclose(np.asarray(new.bias), np.asarray(via_dual), atol=1e-7)
        # and it equals the literal Algorithm 1 update in numpy
        lbar = float(np.mean(loads))
        ref = np.asarray(state.bias) + u * np.sign(lbar - np.asarray(loads))
        np.testing.assert_allclose(np.asarray(new.bias), ref, atol=1e-7)


@pytest.mark.parametrize(
    ("rule", "schedule", "expected"),
    [
        ("dual", "constant", 0.5 * (2.0 - np.array([5.0, 1.0, 1.0, 1.0]))),
        ("dual", "inv_t", 0.5 * (2.0 - np.array([5.0, 1.0, 1.0, 1.0]))),
        ("magnitude", "constant", 0.5 * (2.0 - np.array([5.0, 1.0, 1.0, 1.0])) / 2.0),
    ],
)
def test_update_rules_first_step(rule, schedule, expected):
    # first step (n = 1): every schedule has eta_1 = rate; hand-computed updates
    bal = AuxLossFreeBalancer(rule, schedule)
    state = bal.update(bal.init(4, rate=0.5), jnp.array([5.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(state.bias), expected, rtol=1e-6)


def test_schedules_step_sizes():
    steps = jnp.arange(5)
    n = np.arange(1, 6)
    for sched, ref in [
        ("constant", np.full(5, 0.3)),
        ("inv_t", 0.3 / n),
        ("inv_sqrt_t", 0.3 / np.sqrt(n)),
    ]:
        got = jax.vmap(lambda s, sch=sched: AuxLossFreeBalancer("dual", sch).step_size(s, 0.3))(
            steps
        )
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-6)


def test_lp_matches_assignment_reference_k1():
    # K = 1: the LP optimum equals linear_sum_assignment with each expert replicated Lbar times
    rng = np.random.default_rng(2)
    t, n = 24, 4
    g = rng.random((t, n))
    res = solve_balanced_assignment(g, 1)
    rows, cols = scipy.optimize.linear_sum_assignment(np.repeat(g, t // n, axis=1), maximize=True)
    ref = g[rows, cols // (t // n)].sum()
    assert abs(res.objective - ref) < 1e-9  # both exact; HiGHS primal tol 1e-7 per entry at most
    # vertex solution of a totally unimodular LP is integral
    np.testing.assert_allclose(res.assignment, np.round(res.assignment), atol=1e-9)
    np.testing.assert_allclose(res.loads, t // n, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3))
def test_weak_and_strong_duality(seed, k):
    # weak duality D(p) >= OPT_LP for every p, equality at the LP multipliers p* (strong)
    rng = np.random.default_rng(seed)
    t, n = 30, 6
    g = rng.random((t, n))
    res = solve_balanced_assignment(g, k)
    with x64_scope():
        gj = jnp.asarray(g)
        for _ in range(5):
            p = jnp.asarray(rng.normal(scale=0.3, size=n))
            assert float(dual_objective(gj, p, k)) >= res.objective - 1e-9 * abs(res.objective)
            # shift invariance of D (exact in float64 up to rounding)
            assert abs(float(dual_objective(gj, p + 0.7, k) - dual_objective(gj, p, k))) < 1e-9
        d_star = float(dual_objective(gj, jnp.asarray(res.dual), k))
        # HiGHS tolerances are 1e-7 on primal/dual feasibility -> gap below 1e-6 * scale
        assert abs(d_star - res.objective) < 1e-6 * max(1.0, abs(res.objective))
        x = topk_assignment(gj, jnp.asarray(res.dual), k)
        assert abs(float(lagrangian(gj, x, jnp.asarray(res.dual), k)) - d_star) < 1e-9


def test_dual_iteration_converges_to_lp_load_vector():
    # fixed score matrix; diminishing-step dual subgradient reaches the LP optimum's loads
    # (all equal to Lbar) and a zero duality gap. Skewed scores: plain top-k has MaxVio > 1.
    rng = np.random.default_rng(0)
    t, n, k = 240, 8, 2
    g = skewed_scores(rng, t, n)
    res = solve_balanced_assignment(g, k)
    with x64_scope():
        gj = jnp.asarray(g)
        assert float(max_violation(topk_loads(gj, jnp.zeros(n), k))) > 1.0
        bal = AuxLossFreeBalancer("dual", "inv_sqrt_t")

        def body(s, _):
            loads = topk_loads(gj, s.bias, k)
            return bal.update(s, loads), (loads, dual_objective(gj, s.bias.astype(gj.dtype), k))

        state = bal.init(n, rate=0.01)
        state = state._replace(bias=state.bias.astype(jnp.float64))
        state, (loads, dvals) = jax.lax.scan(body, state, None, length=2000)
    loads = np.asarray(loads)
    # final iterate: exactly the LP load vector (continuous scores -> no ties almost surely)
    np.testing.assert_array_equal(loads[-1], res.loads.round())
    # ergodic average of the last half within 0.5 token of Lbar (primal recovery)
    np.testing.assert_allclose(loads[1000:].mean(0), res.loads, atol=0.5)
    # dual gap D(p_n) - OPT >= 0 (certificate) and below 1e-6 relative at the end
    gaps = np.asarray(dvals) - res.objective
    assert gaps.min() > -1e-9 * res.objective
    assert gaps[-1] < 1e-6 * res.objective


def test_sign_rule_balances_frozen_scores_and_preference_property():
    # frozen scores, sign rule u = 1e-3 -> MaxVio < 0.1 within a few hundred steps; and the
    # preference property: tokens only move from more- to less-loaded experts.
    rng = np.random.default_rng(3)
    t, n, k = 400, 8, 2
    g = jnp.asarray(skewed_scores(rng, t, n), jnp.float32)
    bal = AuxLossFreeBalancer("sign")
    state = bal.init(n, rate=1e-3)
    violations = 0
    mvs = []
    for _ in range(400):
        x_old = np.asarray(topk_assignment(g, state.bias, k))
        loads = x_old.sum(0)
        mvs.append(float(max_violation(jnp.asarray(loads))))
        state = bal.update(state, jnp.asarray(loads))
        x_new = np.asarray(topk_assignment(g, state.bias, k))
        for tt in np.nonzero((x_new != x_old).any(1))[0]:
            gained = np.nonzero(x_new[tt] > x_old[tt])[0]
            lost = np.nonzero(x_new[tt] < x_old[tt])[0]
            violations += int(loads[gained].max() >= loads[lost].min())
    assert violations == 0
    assert mvs[0] > 1.0
    assert min(mvs[200:]) < 0.1 and np.mean(mvs[-50:]) < 0.1


def test_loss_free_bias_changes_selection_not_weights_and_gets_no_gradient():
    key = jax.random.PRNGKey(0)
    cfg = MoEConfig(n_experts=4, router="loss_free", k=2, capacity_factor=None, gate="sigmoid")
    params = init_moe(key, 8, 16, cfg)
    x = jax.random.normal(key, (32, 8))
    scores = jax.nn.sigmoid(x @ params["router"])
    bias = jnp.array([0.0, 0.0, 5.0, 5.0])
    idx, gates = route_topk(scores, 2, bias)
    assert np.all(np.sort(np.asarray(idx), 1) == [2, 3])  # bias forces experts 2, 3
    # weights are the UNBIASED scores of the selected experts
    ref = np.take_along_axis(np.asarray(scores), np.asarray(idx), 1)
    np.testing.assert_array_equal(np.asarray(gates), ref)

    def loss(p, b):
        y, aux = apply_moe(p, x, cfg, bias=b, train=True)
        return jnp.sum(y**2) + aux.aux_loss

    g_params, g_bias = jax.jit(jax.grad(loss, argnums=(0, 1)))(
        params, jnp.array([0.1, -0.2, 0.3, 0.0])
    )
    assert np.all(np.asarray(g_bias) == 0.0)
    assert float(jnp.abs(g_params["router"]).sum()) > 0  # the gate itself is trained
    # u = 0: the bias never moves and routing stays plain top-k
    bal = AuxLossFreeBalancer("sign")
    s = bal.update(bal.init(4, rate=0.0), jnp.array([9.0, 1.0, 1.0, 1.0]))
    assert np.all(np.asarray(s.bias) == 0.0)
