"""A small pre-LN Transformer (encoder-decoder or decoder-only) on the MoE layers, with training.

Pure functions over a parameter pytree: :func:`init_transformer`, :func:`apply_transformer`,
:func:`train_transformer` (one module-level jitted step; tqdm progress; NumPy checkpoints),
:func:`evaluate_lm` and :func:`greedy_decode`. Token id 0 is padding, 1 BOS, 2 EOS by convention.

Expert layers follow the THOR code's rule ``use_expert(layer) = layer % moe_every == 0``
(``moe_every=2``: layers 0, 2, 4, ...). With ``config.moe.router == "loss_free"`` the balancing
biases are one row per expert layer (encoder layers first, then decoder layers).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from tqdm.auto import tqdm

from mixtures.experts._balancing import AuxLossFreeBalancer, BalancerState, max_violation
from mixtures.experts._layer import MoEConfig, apply_moe, init_moe
from mixtures.experts._thor import label_smoothed_cross_entropy, thor_loss

__all__ = [
    "TrainResult",
    "TransformerConfig",
    "apply_transformer",
    "count_parameters",
    "evaluate_lm",
    "greedy_decode",
    "init_transformer",
    "load_checkpoint",
    "n_moe_layers",
    "save_checkpoint",
    "split_pass_keys",
    "train_transformer",
]

PAD, BOS, EOS = 0, 1, 2


class TransformerConfig(NamedTuple):
    """Static configuration of the Transformer.

    Attributes
    ----------
    vocab_size : int
        Shared source/target vocabulary (embeddings tied with the output projection).
    d_model, n_heads, d_ff : int
        Width, attention heads, FFN width (per expert).
    n_encoder_layers : int
        0 gives a decoder-only language model.
    n_decoder_layers : int
    max_len : int
        Longest sequence (sinusoidal positions).
    moe : MoEConfig or None
        Expert layer configuration; ``None`` is the dense Transformer.
    moe_every : int
        Expert FFN in layers with ``layer % moe_every == 0`` (THOR: 2; all layers: 1).
    n_shared_experts : int
        Dense shared experts added to each expert layer (DeepSeekMoE); 0 or more.
    """

    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    max_len: int = 64
    moe: MoEConfig | None = None
    moe_every: int = 2
    n_shared_experts: int = 0


class TrainResult(NamedTuple):
    """Result of :func:`train_transformer`.

    Attributes
    ----------
    params : pytree of NumPy arrays
    balancer_state : BalancerState or None
        Final biases (``loss_free`` only).
    history : dict of ndarray
        ``loss`` (steps,), ``aux_loss`` (steps,), ``loads`` (steps, n_moe_layers, N),
        ``max_violation_batch`` (steps, n_moe_layers).
    """

    params: Any
    balancer_state: BalancerState | None
    history: dict[str, np.ndarray]


def _is_moe(cfg: TransformerConfig, layer: int) -> bool:
    return cfg.moe is not None and layer % cfg.moe_every == 0


def n_moe_layers(cfg: TransformerConfig) -> int:
    """Number of expert layers (rows of the balancing bias)."""
    return sum(_is_moe(cfg, i) for i in range(cfg.n_encoder_layers)) + sum(
        _is_moe(cfg, i) for i in range(cfg.n_decoder_layers)
    )


def _dense(key, n_in, n_out):
    lim = math.sqrt(6.0 / (n_in + n_out))
    return jax.random.uniform(key, (n_in, n_out), jnp.float32, -lim, lim)


def _init_attn(key, d):
    ks = jax.random.split(key, 4)
    return {n: _dense(k, d, d) for n, k in zip(("q", "k", "v", "o"), ks, strict=True)}


def _init_ln(d):
    return {"g": jnp.ones(d), "b": jnp.zeros(d)}


def _init_ffn(key, d, f):
    k1, k2 = jax.random.split(key)
    return {"w1": _dense(k1, d, f), "b1": jnp.zeros(f), "w2": _dense(k2, f, d), "b2": jnp.zeros(d)}


def _init_layer(key, cfg, layer, cross):
    ks = jax.random.split(key, 4 + cfg.n_shared_experts)
    p = {"ln1": _init_ln(cfg.d_model), "attn": _init_attn(ks[0], cfg.d_model)}
    if cross:
        p["ln_x"] = _init_ln(cfg.d_model)
        p["cross"] = _init_attn(ks[1], cfg.d_model)
    p["ln2"] = _init_ln(cfg.d_model)
    if _is_moe(cfg, layer):
        p["moe"] = init_moe(ks[2], cfg.d_model, cfg.d_ff, cfg.moe)
        p["shared"] = [
            _init_ffn(ks[4 + j], cfg.d_model, cfg.d_ff) for j in range(cfg.n_shared_experts)
        ]
    else:
        p["ffn"] = _init_ffn(ks[3], cfg.d_model, cfg.d_ff)
    return p


def init_transformer(key: Array, cfg: TransformerConfig) -> dict[str, Any]:
    """Initialise the parameter pytree (dicts and lists of float32 arrays)."""
    if cfg.d_model % cfg.n_heads:
        raise ValueError(f"d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads}).")
    if cfg.n_decoder_layers < 1:
        raise ValueError(f"n_decoder_layers must be >= 1; got {cfg.n_decoder_layers}.")
    ke, kenc, kdec = jax.random.split(key, 3)
    return {
        "embed": jax.random.normal(ke, (cfg.vocab_size, cfg.d_model)) * cfg.d_model**-0.5,
        "encoder": [
            _init_layer(k, cfg, i, False)
            for i, k in enumerate(jax.random.split(kenc, max(cfg.n_encoder_layers, 1)))
        ][: cfg.n_encoder_layers],
        "enc_ln": _init_ln(cfg.d_model),
        "decoder": [
            _init_layer(k, cfg, i, cfg.n_encoder_layers > 0)
            for i, k in enumerate(jax.random.split(kdec, cfg.n_decoder_layers))
        ],
        "dec_ln": _init_ln(cfg.d_model),
    }


def count_parameters(params: Any) -> int:
    """Total number of scalars in a parameter pytree."""
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def _ln(p, x):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.var(x, -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p["g"] + p["b"]


def _positions(length, d):
    pos = np.arange(length)[:, None]
    div = np.exp(np.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = np.zeros((length, d), np.float32)
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)
    return jnp.asarray(pe)


def _attention(p, xq, xkv, mask, n_heads):
    b, sq, d = xq.shape
    sk = xkv.shape[1]
    h = d // n_heads
    q = (xq @ p["q"]).reshape(b, sq, n_heads, h)
    k = (xkv @ p["k"]).reshape(b, sk, n_heads, h)
    v = (xkv @ p["v"]).reshape(b, sk, n_heads, h)
    logits = jnp.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(h)
    logits = jnp.where(mask[:, None], logits, -1e9)
    att = jax.nn.softmax(logits, -1)
    return jnp.einsum("bhqk,bkhc->bqhc", att, v).reshape(b, sq, d) @ p["o"]


def _drop(x, key, rate):
    if key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _layer(p, cfg, x, self_mask, mem, cross_mask, key, train, rate, bias):
    keys = jax.random.split(key, 5) if key is not None else [None] * 5
    dk = (lambda i: keys[i]) if train else (lambda i: None)
    x = x + _drop(
        _attention(p["attn"], _ln(p["ln1"], x), _ln(p["ln1"], x), self_mask, cfg.n_heads),
        dk(0),
        rate,
    )
    if mem is not None:
        x = x + _drop(
            _attention(p["cross"], _ln(p["ln_x"], x), mem, cross_mask, cfg.n_heads), dk(1), rate
        )
    h = _ln(p["ln2"], x)
    aux = None
    if "moe" in p:
        y, aux = apply_moe(
            p["moe"], h, cfg.moe, key=keys[2], bias=bias, train=train, dropout_rate=rate
        )
        for sp in p["shared"]:
            y = y + jax.nn.relu(h @ sp["w1"] + sp["b1"]) @ sp["w2"] + sp["b2"]
    else:
        f = p["ffn"]
        y = jax.nn.relu(h @ f["w1"] + f["b1"]) @ f["w2"] + f["b2"]
    return x + _drop(y, dk(3), rate), aux


def apply_transformer(
    params: dict[str, Any],
    cfg: TransformerConfig,
    tokens: Array,
    *,
    src: Array | None = None,
    key: Array | None = None,
    train: bool = False,
    biases: Array | None = None,
    dropout_rate: float | Array = 0.0,
) -> tuple[Array, Array, Array]:
    """Logits of the decoder for input ``tokens`` ``[B, S]`` (teacher forcing).

    Parameters
    ----------
    params, cfg
        From :func:`init_transformer`.
    tokens : int Array of shape (batch, tgt_len)
        Decoder input (BOS-shifted target, or the LM context).
    src : int Array of shape (batch, src_len), optional
        Encoder input (required iff ``cfg.n_encoder_layers > 0``); id 0 is padding.
    key : PRNG key, optional
        Dropout and stochastic routing; random-routing inference modes need it too.
    train : bool
    biases : Array of shape (n_moe_layers, n_experts), optional
        Loss-free balancing biases (zeros if omitted).
    dropout_rate : float

    Returns
    -------
    logits : Array of shape (batch, tgt_len, vocab_size)
    aux_loss : Array
        Sum over expert layers of the unscaled balance loss.
    loads : Array of shape (n_moe_layers, n_experts)
        Selected token slots per expert layer.
    """
    if (src is None) != (cfg.n_encoder_layers == 0):
        raise ValueError(
            "src must be given exactly when the model has an encoder "
            f"(n_encoder_layers={cfg.n_encoder_layers})."
        )
    n_moe = n_moe_layers(cfg)
    if cfg.moe is not None and biases is None:
        biases = jnp.zeros((n_moe, cfg.moe.n_experts), jnp.float32)
    n_layers = cfg.n_encoder_layers + cfg.n_decoder_layers
    lkeys = (
        list(jax.random.split(key, n_layers + 2)) if key is not None else [None] * (n_layers + 2)
    )
    emb = params["embed"]
    scale = math.sqrt(cfg.d_model)
    aux_total = jnp.zeros((), jnp.float32)
    loads = []
    moe_i = 0
    mem, cross_mask = None, None
    if src is not None:
        xs = emb[src] * scale + _positions(src.shape[1], cfg.d_model)
        xs = _drop(xs, lkeys[-1] if train else None, dropout_rate)
        kmask = src != PAD
        smask = jnp.broadcast_to(kmask[:, None, :], (src.shape[0], src.shape[1], src.shape[1]))
        for i, p in enumerate(params["encoder"]):
            b = biases[moe_i] if "moe" in p else None
            xs, aux = _layer(p, cfg, xs, smask, None, None, lkeys[i], train, dropout_rate, b)
            if aux is not None:
                aux_total, moe_i = aux_total + aux.aux_loss, moe_i + 1
                loads.append(aux.loads)
        mem = _ln(params["enc_ln"], xs)
        cross_mask = jnp.broadcast_to(
            kmask[:, None, :], (src.shape[0], tokens.shape[1], src.shape[1])
        )
    s = tokens.shape[1]
    x = emb[tokens] * scale + _positions(s, cfg.d_model)
    x = _drop(x, lkeys[-2] if train else None, dropout_rate)
    causal = jnp.broadcast_to(jnp.tril(jnp.ones((s, s), bool)), (tokens.shape[0], s, s))
    for j, p in enumerate(params["decoder"]):
        b = biases[moe_i] if "moe" in p else None
        x, aux = _layer(
            p,
            cfg,
            x,
            causal,
            mem,
            cross_mask,
            lkeys[cfg.n_encoder_layers + j],
            train,
            dropout_rate,
            b,
        )
        if aux is not None:
            aux_total, moe_i = aux_total + aux.aux_loss, moe_i + 1
            loads.append(aux.loads)
    logits = _ln(params["dec_ln"], x) @ emb.T
    n_exp = cfg.moe.n_experts if cfg.moe is not None else 1
    loads_arr = jnp.stack(loads) if loads else jnp.zeros((0, n_exp), jnp.float32)
    return logits, aux_total, loads_arr


# ---------------------------------------------------------------------------------------------
# training

_OPTIMIZER = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(b1=0.9, b2=0.98))


def split_pass_keys(key: Array) -> tuple[Array, Array]:
    """Independent keys of THOR's two passes (expert draws and dropout differ between them)."""
    ka, kb = jax.random.split(key)
    return ka, kb


def _objective(params, cfg, batch, key, hyper, biases, two_pass):
    src = batch.get("src")
    tgt_in, tgt_out = batch["tgt_in"], batch["tgt_out"]
    mask = (tgt_out != PAD).astype(jnp.float32)
    ka, kb = split_pass_keys(key)
    logits_a, aux_a, loads_a = apply_transformer(
        params,
        cfg,
        tgt_in,
        src=src,
        key=ka,
        train=True,
        biases=biases,
        dropout_rate=hyper["dropout"],
    )
    if two_pass:
        logits_b, aux_b, _ = apply_transformer(
            params,
            cfg,
            tgt_in,
            src=src,
            key=kb,
            train=True,
            biases=biases,
            dropout_rate=hyper["dropout"],
        )
        out = thor_loss(
            logits_a,
            logits_b,
            tgt_out,
            hyper["thor_alpha"],
            label_smoothing=hyper["label_smoothing"],
            mask=mask,
        )
        main = out.loss
        aux = 0.5 * (aux_a + aux_b)
    else:
        ce = label_smoothed_cross_entropy(logits_a, tgt_out, hyper["label_smoothing"])
        main = jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        aux = aux_a
    return main + hyper["aux_alpha"] * aux, (main, aux, loads_a)


@partial(jax.jit, static_argnames=("cfg", "balancer", "two_pass"))
def _train_step(params, opt_state, bal_state, batch, key, hyper, *, cfg, balancer, two_pass):
    biases = bal_state.bias if bal_state is not None else None
    grads, (main, aux, loads) = jax.grad(_objective, has_aux=True)(
        params, cfg, batch, key, hyper, biases, two_pass
    )
    updates, opt_state = _OPTIMIZER.update(grads, opt_state, params)
    params = jax.tree_util.tree_map(lambda p, u: p - hyper["lr"] * u, params, updates)
    if balancer is not None:
        bal_state = balancer.update(bal_state, loads)  # used for the NEXT batch
    return params, opt_state, bal_state, main, aux, loads


def _lr(step, peak, warmup):
    """Inverse-square-root schedule with linear warmup (fairseq ``inverse_sqrt``)."""
    s = step + 1
    return peak * min(s / warmup, math.sqrt(warmup / s))


def train_transformer(
    cfg: TransformerConfig,
    batches: Callable[[int], dict[str, np.ndarray]],
    *,
    n_steps: int,
    key: Array,
    learning_rate: float = 1e-3,
    warmup: int = 100,
    aux_alpha: float = 0.0,
    thor_alpha: float | None = None,
    label_smoothing: float = 0.0,
    dropout_rate: float = 0.0,
    balancer: AuxLossFreeBalancer | None = None,
    balancer_rate: float = 1e-3,
    params: Any = None,
    verbose: int = 1,
    checkpoint_path: str | pathlib.Path | None = None,
    checkpoint_every: int = 0,
) -> TrainResult:
    """Train with Adam (beta2 = 0.98, clip 1.0) and an inverse-sqrt schedule.

    ``batches(step)`` returns a dict of int arrays ``tgt_in``, ``tgt_out`` (both ``[B, S]``,
    0 = padding) and, for an encoder-decoder, ``src``. Loss: label-smoothed CE (one pass)
    plus ``aux_alpha`` times the balance loss; with ``thor_alpha`` set, two passes with
    independent keys and :func:`thor_loss` (THOR; ``n_experts=1`` is R-Drop). With a
    ``balancer`` (``router="loss_free"``) the biases are updated after each step from the
    step's loads, outside the gradient. Checkpoints (``np.savez``) every ``checkpoint_every``
    steps and at the end when ``checkpoint_path`` is given.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}.")
    if (balancer is not None) != (cfg.moe is not None and cfg.moe.router == "loss_free"):
        raise ValueError(
            "pass balancer=AuxLossFreeBalancer(...) exactly when cfg.moe.router == 'loss_free'."
        )
    kinit, key = jax.random.split(key)
    if params is None:
        params = init_transformer(kinit, cfg)
    opt_state = _OPTIMIZER.init(params)
    bal_state = (
        balancer.init(cfg.moe.n_experts, balancer_rate, (n_moe_layers(cfg),))
        if balancer is not None
        else None
    )
    hist = {"loss": [], "aux_loss": [], "loads": []}
    bar = tqdm(range(n_steps), disable=verbose == 0, desc="train", leave=False)
    for step in bar:
        hyper = {
            "lr": jnp.float32(_lr(step, learning_rate, warmup)),
            "aux_alpha": jnp.float32(aux_alpha),
            "thor_alpha": jnp.float32(0.0 if thor_alpha is None else thor_alpha),
            "label_smoothing": jnp.float32(label_smoothing),
            "dropout": jnp.float32(dropout_rate),
        }
        batch = {k: jnp.asarray(v) for k, v in batches(step).items()}
        params, opt_state, bal_state, main, aux, loads = _train_step(
            params,
            opt_state,
            bal_state,
            batch,
            jax.random.fold_in(key, step),
            hyper,
            cfg=cfg,
            balancer=balancer,
            two_pass=thor_alpha is not None,
        )
        hist["loss"].append(main)
        hist["aux_loss"].append(aux)
        hist["loads"].append(loads)
        if verbose and step % 20 == 0:
            bar.set_postfix(loss=f"{float(main):.3f}")
        if checkpoint_path is not None and checkpoint_every and (step + 1) % checkpoint_every == 0:
            save_checkpoint(checkpoint_path, params, bal_state)
    history = {k: np.asarray(jnp.stack(v)) for k, v in hist.items()}
    if not np.all(np.isfinite(history["loss"])):
        raise ValueError("training loss became non-finite; lower learning_rate or increase warmup.")
    history["max_violation_batch"] = np.asarray(max_violation(history["loads"]))
    params = jax.tree_util.tree_map(np.asarray, params)
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, params, bal_state)
    return TrainResult(params=params, balancer_state=bal_state, history=history)


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path: str | pathlib.Path, params: Any, state: Any = None) -> pathlib.Path:
    """Save a parameter pytree (and optional balancer state) as one ``.npz`` of NumPy arrays.

    Keys are the pytree paths (``jax.tree_util.keystr``); load with :func:`load_checkpoint`.
    """
    path = pathlib.Path(path)
    arrays = {
        "params" + jax.tree_util.keystr(kp): np.asarray(v)
        for kp, v in jax.tree_util.tree_leaves_with_path(params)
    }
    if state is not None:
        arrays.update(
            {
                "state" + jax.tree_util.keystr(kp): np.asarray(v)
                for kp, v in jax.tree_util.tree_leaves_with_path(state)
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_checkpoint(path: str | pathlib.Path, like: Any, state_like: Any = None) -> Any:
    """Load a checkpoint into the structure of ``like`` (and ``state_like``, if given).

    Returns ``params`` or ``(params, state)`` with NumPy leaves.
    """
    with np.load(pathlib.Path(path)) as data:

        def fill(prefix, tree):
            leaves = []
            for kp, v in jax.tree_util.tree_leaves_with_path(tree):
                name = prefix + jax.tree_util.keystr(kp)
                if name not in data or data[name].shape != np.shape(v):
                    raise ValueError(
                        f"checkpoint {path} has no array {name!r} of shape {np.shape(v)}; "
                        "load it with the configuration it was saved with."
                    )
                leaves.append(data[name])
            return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), leaves)

        params = fill("params", like)
        if state_like is None:
            return params
        return params, fill("state", state_like)


# ---------------------------------------------------------------------------------------------
# evaluation


@partial(jax.jit, static_argnames=("cfg",))
def _lm_eval_batch(params, cfg, tgt_in, tgt_out, biases, key):
    logits, _, loads = apply_transformer(params, cfg, tgt_in, key=key, biases=biases)
    mask = (tgt_out != PAD).astype(jnp.float32)
    nll = label_smoothed_cross_entropy(logits, tgt_out, 0.0)
    return jnp.sum(nll * mask), jnp.sum(mask), loads


def evaluate_lm(
    params: Any,
    cfg: TransformerConfig,
    tgt_in: np.ndarray,
    tgt_out: np.ndarray,
    *,
    biases: Array | None = None,
    batch_size: int = 64,
    key: Array | None = None,
) -> dict[str, Any]:
    """Mean NLL (nats/token), perplexity and global loads/MaxVio of a decoder-only model.

    Returns a dict with ``nll``, ``perplexity``, ``loads`` ``[n_moe_layers, N]`` (summed over
    the whole set) and ``max_violation_global`` per expert layer.
    """
    tot, cnt, loads = 0.0, 0.0, 0.0
    key = jax.random.PRNGKey(0) if key is None else key
    for i in range(0, len(tgt_in), batch_size):
        s, c, ld = _lm_eval_batch(
            params,
            cfg,
            jnp.asarray(tgt_in[i : i + batch_size]),
            jnp.asarray(tgt_out[i : i + batch_size]),
            biases,
            jax.random.fold_in(key, i),
        )
        tot, cnt, loads = tot + float(s), cnt + float(c), loads + np.asarray(ld)
    nll = tot / cnt
    loads = np.asarray(loads)
    return {
        "nll": nll,
        "perplexity": float(np.exp(nll)),
        "loads": loads,
        "max_violation_global": np.asarray(max_violation(loads)) if loads.size else np.zeros(0),
    }


@partial(jax.jit, static_argnames=("cfg", "max_len"))
def _greedy(params, cfg, src, key, biases, max_len):
    b = src.shape[0]
    out = jnp.zeros((b, max_len + 1), jnp.int32).at[:, 0].set(BOS)

    def body(i, out):
        logits, _, _ = apply_transformer(params, cfg, out[:, :-1], src=src, key=key, biases=biases)
        nxt = jnp.argmax(logits[:, i], -1).astype(jnp.int32)
        return out.at[:, i + 1].set(nxt)

    return jax.lax.fori_loop(0, max_len, body, out)[:, 1:]


def greedy_decode(
    params: Any,
    cfg: TransformerConfig,
    src: np.ndarray,
    max_len: int,
    *,
    key: Array | None = None,
    biases: Array | None = None,
) -> np.ndarray:
    """Greedy decoding (full recomputation per step, causal mask), ids after EOS set to 0.

    With a random router the *same* ``key`` is reused at every decoding step, so a
    ``"sequence"`` inference draw is fixed for the whole sentence: a true per-sentence draw
    (the incremental fairseq decoder of THOR's official code redraws at every step instead).
    """
    key = jax.random.PRNGKey(0) if key is None else key
    ids = np.array(_greedy(params, cfg, jnp.asarray(src), key, biases, max_len))
    after = np.cumsum(ids == EOS, axis=1) - (ids == EOS) > 0
    ids[after] = PAD
    return ids
