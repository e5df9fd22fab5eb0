"""Small MoE Transformer: causality, checkpoint round trip, training on loss-free balancing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtures.experts import (
    AuxLossFreeBalancer,
    MoEConfig,
    TransformerConfig,
    apply_transformer,
    init_transformer,
    load_checkpoint,
    max_violation,
    n_moe_layers,
    save_checkpoint,
    train_transformer,
)

LM = TransformerConfig(
    vocab_size=12,
    d_model=16,
    n_heads=2,
    d_ff=16,
    n_encoder_layers=0,
    n_decoder_layers=1,  # one layer: compilation dominates the test's CPU time
    max_len=16,
    moe=MoEConfig(n_experts=4, router="loss_free", k=2, capacity_factor=None, gate="sigmoid"),
    moe_every=1,
    n_shared_experts=1,
)


def test_decoder_only_is_causal_and_checkpoint_round_trips(tmp_path):
    params = init_transformer(jax.random.PRNGKey(0), LM)
    tok = jnp.array([[1, 5, 7, 3, 9, 4]])
    tok2 = tok.at[0, 4:].set(11)  # change only the future
    f = jax.jit(lambda p, t: apply_transformer(p, LM, t)[0])
    la, lb = f(params, tok), f(params, tok2)
    # positions 0..3 see identical prefixes -> identical logits (exactly: same float ops)
    np.testing.assert_array_equal(np.asarray(la[0, :4]), np.asarray(lb[0, :4]))
    assert np.abs(np.asarray(la[0, 4:] - lb[0, 4:])).max() > 0
    path = save_checkpoint(tmp_path / "ckpt.npz", params)
    back = load_checkpoint(path, params)
    for u, v in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(u), v)
    with pytest.raises(ValueError, match="no array"):
        load_checkpoint(path, {"other": np.zeros(3)})


def test_loss_free_training_balances_and_learns():
    # periodic sequence: next token = (token + 1) mod 9 + 3 is learnable; the balancer must keep
    # the batch loads near uniform while the loss falls
    rng = np.random.default_rng(0)

    def batches(step):
        start = rng.integers(0, 9, size=(16, 1))
        seq = (start + np.arange(9)) % 9 + 3
        return {"tgt_in": seq[:, :-1], "tgt_out": seq[:, 1:]}

    res = train_transformer(
        LM,
        batches,
        n_steps=60,
        key=jax.random.PRNGKey(1),
        learning_rate=3e-3,
        warmup=10,
        balancer=AuxLossFreeBalancer("sign"),
        balancer_rate=1e-2,
        verbose=0,
    )
    h = res.history
    assert h["loads"].shape == (60, n_moe_layers(LM), 4)
    # every token slot is counted: loads sum to k * tokens per layer
    np.testing.assert_array_equal(h["loads"].sum(-1), 2 * 16 * 8)
    np.testing.assert_allclose(h["max_violation_batch"], np.asarray(max_violation(h["loads"])))
    assert h["loss"][-5:].mean() < 0.5 * h["loss"][:5].mean()
    assert res.balancer_state.bias.shape == (1, 4) and int(res.balancer_state.step) == 60
    assert np.abs(np.asarray(res.balancer_state.bias)).max() > 0
