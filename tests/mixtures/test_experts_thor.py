"""THOR stochastic experts and its loss (Zuo et al., ICLR 2022; the official fairseq code)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from mixtures.experts import (
    MoEConfig,
    TransformerConfig,
    apply_moe,
    apply_transformer,
    init_moe,
    init_transformer,
    split_pass_keys,
    symmetric_kl,
    thor_loss,
)

# Chi-square tests use a fixed seed, so they are deterministic; the threshold p > 1e-3 means a
# correct sampler fails for only 0.1% of seeds, while the "shared key" negative control below
# (perfectly correlated passes) gives p ~ 0, so the test has power against the bug it targets.
P_MIN = 1e-3


def numpy_thor_loss(la, lb, y, alpha, eps, mask):
    def logsm(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    a, b = logsm(la.astype(np.float64)), logsm(lb.astype(np.float64))
    v = la.shape[-1]
    target = np.full(la.shape, eps / (v - 1))
    np.put_along_axis(target, y[..., None], 1 - eps, axis=-1)
    ce_a = -(target * a).sum(-1)
    ce_b = -(target * b).sum(-1)
    kl_ab = (np.exp(a) * (a - b)).sum(-1)
    kl_ba = (np.exp(b) * (b - a)).sum(-1)
    cr = 0.5 * (kl_ab + kl_ba)
    return ((ce_a + ce_b + alpha * cr) * mask).sum() / mask.sum(), (cr * mask).sum()


@pytest.mark.parametrize(("alpha", "eps"), [(1.0, 0.0), (5.0, 0.1)])
def test_thor_loss_matches_numpy(alpha, eps):
    rng = np.random.default_rng(0)
    la, lb = rng.normal(size=(2, 3, 5, 7)) * 2
    y = rng.integers(0, 7, size=(3, 5))
    mask = (rng.random((3, 5)) > 0.3).astype(float)
    out = thor_loss(
        jnp.asarray(la),
        jnp.asarray(lb),
        jnp.asarray(y),
        alpha,
        label_smoothing=eps,
        mask=jnp.asarray(mask),
    )
    ref, cr_ref = numpy_thor_loss(la, lb, y, alpha, eps, mask)
    # float32 log-softmax vs float64 reference on O(1) values: 1e-5 relative
    np.testing.assert_allclose(float(out.loss), ref, rtol=1e-5)
    np.testing.assert_allclose(float(out.consistency), cr_ref, rtol=1e-5)
    assert float(out.n_tokens) == mask.sum()


def test_symmetric_kl_properties():
    rng = np.random.default_rng(1)
    a, b = jnp.asarray(rng.normal(size=(2, 4, 6)))
    np.testing.assert_allclose(np.asarray(symmetric_kl(a, a)), 0.0, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(symmetric_kl(a, b)), np.asarray(symmetric_kl(b, a)), rtol=1e-6
    )
    assert np.all(np.asarray(symmetric_kl(a, b)) > 0)


def _draws(n_keys):
    """Expert chosen per (pass, MoE layer) in a tiny encoder-decoder THOR model."""
    moe = MoEConfig(n_experts=4, router="random", granularity="batch")
    cfg = TransformerConfig(
        vocab_size=6,
        d_model=4,
        n_heads=1,
        d_ff=4,
        n_encoder_layers=1,
        n_decoder_layers=1,
        max_len=4,
        moe=moe,
        moe_every=1,
    )
    params = init_transformer(jax.random.PRNGKey(0), cfg)
    src = jnp.array([[3, 4, 5]])
    tgt = jnp.array([[1, 3, 4]])

    def one(key, shared):
        ka, kb = split_pass_keys(key)
        kb = jnp.where(shared, ka, kb)
        _, _, la = apply_transformer(params, cfg, tgt, src=src, key=ka, train=True)
        _, _, lb = apply_transformer(params, cfg, tgt, src=src, key=kb, train=True)
        return jnp.argmax(la, -1), jnp.argmax(lb, -1)  # [n_moe_layers] each

    run = jax.jit(jax.vmap(one, in_axes=(0, None)))
    keys = jax.random.split(jax.random.PRNGKey(42), n_keys)
    (a, b), (a2, b2) = run(keys, False), run(keys, True)
    return np.asarray(a), np.asarray(b), np.asarray(a2), np.asarray(b2)


def test_thor_choice_uniform_and_independent_across_passes_and_layers():
    a, b, a2, b2 = _draws(2000)
    e = 4
    # uniform marginal per pass and per layer: chi-square GOF, df = 3
    for draws in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]):
        assert scipy.stats.chisquare(np.bincount(draws, minlength=e)).pvalue > P_MIN
    # independence of pass 1 and pass 2 (same layer), and of the two layers (same pass):
    # joint table vs the uniform product, 16 cells, df = 15 (expected 125 per cell)
    for u, v in ((a[:, 0], b[:, 0]), (a[:, 1], b[:, 1]), (a[:, 0], a[:, 1])):
        joint = np.bincount(u * e + v, minlength=e * e)
        assert scipy.stats.chisquare(joint).pvalue > P_MIN
    # P(same expert in both passes) = 1/E; binomial 5-sigma band
    same = np.mean(a[:, 0] == b[:, 0])
    assert abs(same - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 2000)
    # negative control: reusing one key for both passes is detected
    assert scipy.stats.chisquare(np.bincount(a2[:, 0] * e + b2[:, 0], minlength=16)).pvalue < 1e-6


def test_token_and_sequence_granularity():
    cfg_tok = MoEConfig(n_experts=3, router="random", granularity="token")
    params = init_moe(jax.random.PRNGKey(0), 4, 6, cfg_tok)
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 40, 4))
    run = jax.jit(lambda c, k: apply_moe(params, x, c, key=k, train=True)[1], static_argnums=0)
    aux = run(cfg_tok, jax.random.PRNGKey(2))
    counts = np.bincount(np.asarray(aux.expert_index).ravel(), minlength=3)
    assert scipy.stats.chisquare(counts).pvalue > P_MIN  # 2000 tokens, df = 2
    cfg_seq = cfg_tok._replace(granularity="sequence")
    aux = run(cfg_seq, jax.random.PRNGKey(3))
    idx = np.asarray(aux.expert_index).reshape(50, 40)
    assert np.all(idx == idx[:, :1])  # constant along the sequence axis
    assert len(np.unique(idx[:, 0])) == 3


def test_single_pass_gradient_only_reaches_selected_expert():
    cfg = MoEConfig(n_experts=3, router="random")
    params = init_moe(jax.random.PRNGKey(0), 4, 6, cfg)
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 4))
    key = jax.random.PRNGKey(5)

    def loss(p):
        y, aux = apply_moe(p, x, cfg, key=key, train=True)
        return jnp.sum(y**2), aux

    g, aux = jax.jit(jax.grad(loss, has_aux=True))(params)
    chosen = int(aux.expert_index[0, 0])
    norms = np.abs(np.asarray(g["w1"])).sum((1, 2))
    assert norms[chosen] > 0 and np.all(np.delete(norms, chosen) == 0)


def test_deterministic_inference_modes():
    cfg = MoEConfig(n_experts=3, router="random", inference="mean")
    params = init_moe(jax.random.PRNGKey(0), 4, 6, cfg)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (7, 4)), np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    experts = [
        np.maximum(x @ p["w1"][i] + p["b1"][i], 0) @ p["w2"][i] + p["b2"][i] for i in range(3)
    ]
    run = jax.jit(lambda p, x, c: apply_moe(p, x, c)[0], static_argnums=2)
    y_mean = run(params, jnp.asarray(x, jnp.float32), cfg)
    np.testing.assert_allclose(np.asarray(y_mean), np.mean(experts, 0), rtol=1e-5, atol=1e-6)
    y_fix = run(
        params, jnp.asarray(x, jnp.float32), cfg._replace(inference="fixed", fixed_expert=2)
    )
    np.testing.assert_allclose(np.asarray(y_fix), experts[2], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs key"):
        apply_moe(params, jnp.asarray(x, jnp.float32), cfg._replace(inference="sequence"))
