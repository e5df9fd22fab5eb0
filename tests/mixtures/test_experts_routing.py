"""Top-k / Switch routing: capacity, top-k, auxiliary loss (Fedus et al. 2022; ALF-LB Eq. 2)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtures.experts import MoEConfig, apply_moe, expert_capacity, init_moe


def numpy_moe_reference(params, x, cfg, bias=None):
    """Loop-based reference: gates, top-k, choice-major capacity, expert FFNs (float64)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    t, _ = x.shape
    n = cfg.n_experts
    logits = x @ p["router"]
    if cfg.gate == "softmax":
        s = np.exp(logits - logits.max(1, keepdims=True))
        s /= s.sum(1, keepdims=True)
    else:
        s = 1 / (1 + np.exp(-logits))
    sel = s + (0 if bias is None else np.asarray(bias))
    idx = np.argsort(-sel, axis=1, kind="stable")[:, : cfg.k]
    gates = np.take_along_axis(s, idx, 1)
    if cfg.renormalize:
        gates = gates / gates.sum(1, keepdims=True)
    cap = (
        t if cfg.capacity_factor is None else min(t, math.ceil(cfg.capacity_factor * cfg.k * t / n))
    )
    fill = np.zeros(n, int)
    y = np.zeros_like(x)
    kept = np.zeros((t, cfg.k), bool)
    for j in range(cfg.k):  # all first choices before second choices, tokens in order
        for tt in range(t):
            e = idx[tt, j]
            if fill[e] < cap:
                fill[e] += 1
                kept[tt, j] = True
                h = np.maximum(x[tt] @ p["w1"][e] + p["b1"][e], 0)
                y[tt] += gates[tt, j] * (h @ p["w2"][e] + p["b2"][e])
    counts = np.bincount(idx.ravel(), minlength=n)
    aux = np.sum(counts * n / (cfg.k * t) * s.mean(0))
    return y, kept, counts, aux


@pytest.mark.parametrize(
    "cfg",
    [
        MoEConfig(n_experts=4, router="topk", k=1, capacity_factor=1.0),
        MoEConfig(n_experts=4, router="topk", k=2, capacity_factor=0.75, renormalize=True),
        MoEConfig(n_experts=4, router="loss_free", k=2, capacity_factor=None, gate="sigmoid"),
    ],
)
def test_router_matches_reference_and_respects_capacity(cfg):
    key = jax.random.PRNGKey(1)
    params = init_moe(key, 6, 10, cfg)
    params["router"] = params["router"] * 20  # sharpen the gate so routing is skewed
    x = jax.random.normal(jax.random.PRNGKey(2), (40, 6))
    bias = jnp.array([0.0, 0.1, -0.1, 0.05]) if cfg.router == "loss_free" else None
    y, aux = jax.jit(lambda p, x, b: apply_moe(p, x, cfg, bias=b))(params, x, bias)
    y_ref, kept, counts, aux_ref = numpy_moe_reference(params, x, cfg, bias)
    # float32 forward of a 2-layer FFN vs float64 reference: relative 1e-5 of the output scale
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-5 * np.abs(y_ref).max())
    np.testing.assert_array_equal(np.asarray(aux.loads), counts)
    np.testing.assert_allclose(float(aux.aux_loss), aux_ref, rtol=1e-5)
    # capacity respected: kept slots per expert <= C; each token uses k distinct experts
    cap = expert_capacity(40, 4, cfg.k, cfg.capacity_factor)
    idx = np.asarray(aux.expert_index)
    kept_counts = np.bincount(idx[kept], minlength=4)
    assert kept_counts.max() <= cap
    assert all(len(set(row)) == cfg.k for row in idx)
    np.testing.assert_allclose(float(aux.dropped_fraction), 1 - kept.mean(), atol=1e-7)
    if cfg.capacity_factor is None:
        assert float(aux.dropped_fraction) == 0.0


def test_switch_aux_loss_uniform_and_fraction_sums_to_one():
    # Switch: at perfectly uniform routing f_i = P_i = 1/N -> alpha * N * sum f P = alpha
    cfg = MoEConfig(n_experts=4, router="topk", k=1, capacity_factor=None)
    params = init_moe(jax.random.PRNGKey(0), 4, 8, cfg)
    # router = identity-like on one-hot tokens with equal logits except a tiny winner margin
    params["router"] = jnp.eye(4) * 1e-6
    x = jnp.tile(jnp.eye(4), (5, 1))  # 20 tokens, 5 to each expert
    _, aux = jax.jit(lambda p, x: apply_moe(p, x, cfg))(params, x)  # one compile, not op-by-op
    np.testing.assert_array_equal(np.asarray(aux.loads), [5, 5, 5, 5])
    f = np.asarray(aux.loads) / 20
    assert f.sum() == 1.0
    a = 1e-2
    # probabilities are 1/4 up to 1e-6 logit differences -> aux within 1e-6 of 1
    assert abs(a * float(aux.aux_loss) - a) < a * 1e-6


def test_dropped_tokens_give_zero_output():
    cfg = MoEConfig(n_experts=2, router="topk", k=1, capacity_factor=0.5)
    params = init_moe(jax.random.PRNGKey(0), 3, 5, cfg)
    params["router"] = jnp.array([[10.0, -10.0]] * 3)  # everything prefers expert 0
    x = jnp.abs(jax.random.normal(jax.random.PRNGKey(1), (8, 3)))
    y, aux = jax.jit(lambda p, x: apply_moe(p, x, cfg))(params, x)
    assert expert_capacity(8, 2, 1, 0.5) == 2
    assert np.all(np.abs(np.asarray(y[2:])) == 0.0)  # tokens 2..7 overflow expert 0
    assert float(aux.dropped_fraction) == 0.75


def test_bad_config_raises():
    with pytest.raises(ValueError, match="router must be one of"):
        init_moe(jax.random.PRNGKey(0), 4, 4, MoEConfig(router="hash"))
    with pytest.raises(ValueError, match="k must satisfy"):
        init_moe(jax.random.PRNGKey(0), 4, 4, MoEConfig(n_experts=2, k=3))
    cfg = MoEConfig(n_experts=2, router="loss_free")
    p = init_moe(jax.random.PRNGKey(0), 4, 4, cfg)
    with pytest.raises(ValueError, match="needs the balancing bias"):
        apply_moe(p, jnp.ones((3, 4)), cfg)
