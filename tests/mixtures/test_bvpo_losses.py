"""DPO / trace / empty-trace / BVPO losses against a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixtures.base import x64_scope
from mixtures.gradmix import (
    PreferenceBatch,
    bvpo_loss,
    dpo_loss,
    empty_trace_dpo_loss,
    trace_dpo_loss,
)


def _np_dpo(pc, pr, rc, rr, beta):
    """Reference: -log sigmoid(m) written as log(1 + exp(-m)) with NumPy's logaddexp."""
    m = beta * ((pc - rc) - (pr - rr))
    return np.logaddexp(0.0, -m), m


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), beta=st.floats(0.01, 5.0))
def test_losses_match_numpy(seed, n, beta):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(-20, 15, size=n) for _ in range(4)]
    ref_losses, ref_m = _np_dpo(*arrays, beta)
    with x64_scope():
        for fn in (dpo_loss, trace_dpo_loss, empty_trace_dpo_loss):
            out = fn(*(jnp.asarray(a) for a in arrays), beta=beta)
            # float64 on both sides: agreement to rounding (rtol 1e-12)
            np.testing.assert_allclose(out.losses, ref_losses, rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(out.margins, ref_m, rtol=1e-12, atol=1e-12)
            assert float(out.loss) == pytest.approx(ref_losses.mean(), rel=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), alpha=st.floats(0.0, 1.0))
def test_bvpo_combination_and_gradient(seed, alpha):
    rng = np.random.default_rng(seed)
    t = [rng.normal(-30, 10, size=3) for _ in range(4)]
    e = [rng.normal(-5, 2, size=5) for _ in range(4)]
    lt, mt = _np_dpo(*t, 0.3)
    le, me = _np_dpo(*e, 0.3)
    with x64_scope():
        tb = PreferenceBatch(*(jnp.asarray(a) for a in t))
        eb = PreferenceBatch(*(jnp.asarray(a) for a in e))
        out = bvpo_loss(tb, eb, beta=0.3, alpha=alpha)
        assert float(out.loss) == pytest.approx(alpha * lt.mean() + (1 - alpha) * le.mean(), 1e-12)
        np.testing.assert_allclose(out.losses_trace, lt, rtol=1e-12)
        np.testing.assert_allclose(out.margins_empty, me, rtol=1e-12)

        # gradient w.r.t. the policy log-probs: the analytic DPO gradient
        # d l / d pc = -beta sigmoid(-m) / n, d l / d pr = +beta sigmoid(-m) / n;
        # reference log-probs and alpha receive no gradient
        def f(tpc, tpr, trc, a):
            return bvpo_loss(PreferenceBatch(tpc, tpr, trc, tb[3]), eb, beta=0.3, alpha=a).loss

        g = jax.grad(f, argnums=(0, 1, 2, 3))(tb[0], tb[1], tb[2], jnp.asarray(alpha))
        sig = 1.0 / (1.0 + np.exp(mt))
        np.testing.assert_allclose(g[0], -alpha * 0.3 * sig / 3, rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(g[1], alpha * 0.3 * sig / 3, rtol=1e-10, atol=1e-300)
        np.testing.assert_array_equal(g[2], 0.0)
        assert float(g[3]) == 0.0


def test_extreme_margins_are_finite():
    with x64_scope():
        out = dpo_loss(jnp.array([0.0, -1e4]), jnp.array([-1e4, 0.0]), jnp.zeros(2), jnp.zeros(2))
    # m = +-1000: loss ~ exp(-1000) ~ 0 and ~ 1000 (no overflow to inf / NaN)
    np.testing.assert_allclose(out.losses, [0.0, 1000.0], atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        dpo_loss(np.zeros(3), np.zeros(2), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), beta=0.0)
    b = PreferenceBatch(*(np.zeros(2),) * 4)
    with pytest.raises(ValueError, match="alpha"):
        bvpo_loss(b, b, alpha=1.5)
    with pytest.raises(ValueError, match="floating"):
        dpo_loss(*(np.zeros(2, dtype=int),) * 4)


def test_changing_alpha_and_beta_does_not_recompile():
    from mixtures.gradmix._losses import _bvpo_core

    b = PreferenceBatch(*(np.linspace(-3.0, -1.0, 4) + i for i in range(4)))
    bvpo_loss(b, b, beta=0.1, alpha=0.5)
    before = _bvpo_core._cache_size()
    losses = [float(bvpo_loss(b, b, beta=be, alpha=a).loss) for be, a in [(0.2, 0.1), (1.5, 0.9)]]
    # alpha and beta are traced arguments: new values reuse the compiled function
    assert _bvpo_core._cache_size() == before
    ref = [np.logaddexp(0.0, -be * ((b[0] - b[2]) - (b[1] - b[3]))).mean() for be in (0.2, 1.5)]
    np.testing.assert_allclose(losses, ref, rtol=1e-6)  # float32 inputs outside x64
