"""Inference drivers, functional and compiled once per model and data shape.

- :func:`run_nuts` — NumPyro NUTS with cached, shape-keyed samplers (``jit_model_args``), so
  refitting the same model on new data of the same shape compiles nothing.
- :func:`run_svi` — stochastic variational inference built inside our own jitted
  ``lax.scan`` (never ``SVI.run``, which recompiles on every call); the learning rate is a
  traced argument.

Both return named tuples of JAX arrays. Expectation-maximisation for Gaussian mixtures is
:mod:`mixtures.em`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model
from numpyro.optim import optax_to_numpyro
from tqdm.auto import tqdm

from mixtures.base import x64_scope

__all__ = [
    "NUTSResult",
    "SVIResult",
    "chunk_sizes",
    "compile_ahead",
    "progress_chunks",
    "run_nuts",
    "run_svi",
]


# ---------------------------------------------------------------------------------------
# Progress of long scans
# ---------------------------------------------------------------------------------------


def chunk_sizes(total: int, verbose: int, n_chunks: int = 20) -> list[int]:
    """Split ``total`` scan steps into about ``n_chunks`` equal chunks when a progress bar
    is shown (``verbose > 0``), else keep them in one.

    Examples
    --------
    >>> chunk_sizes(45, verbose=1, n_chunks=4), chunk_sizes(45, verbose=0)
    ([11, 11, 11, 11, 1], [45])
    """
    if total < 1:
        return []
    if verbose <= 0:
        return [total]
    chunk = max(1, total // n_chunks)
    return [chunk] * (total // chunk) + ([total % chunk] if total % chunk else [])


def compile_ahead(jitted: Callable, *args: Any, **kwargs: Any) -> Callable:
    """Compile ``jitted(*args, **kwargs)`` now and return the executable as a function of
    the non-static arguments (those of ``args`` that are not static, in order).

    Each call first places its arguments with the shardings the executable was compiled
    for, so that outputs of a sharded step (whose placement XLA chooses) can be fed back
    in; ``jax.jit`` would silently recompile for them, an executable refuses them.
    """
    compiled = jitted.lower(*args, **kwargs).compile()
    shardings = compiled.input_shardings[0]

    def run(*call_args):
        return compiled(*jax.device_put(call_args, shardings))

    return run


def progress_chunks(
    sizes: list[int], compile_chunk: Callable[[int], Callable], *, verbose: int, desc: str
):
    """Run a long jitted scan chunk by chunk under a tqdm bar whose clock starts after
    compilation.

    ``compile_chunk(size)`` returns the ahead-of-time compiled step function for a chunk of
    ``size`` steps (:func:`compile_ahead`); it is called once per distinct size
    before the bar starts, so the bar's rate and ETA count the work, not XLA compilation
    (which can take longer than the work itself). Compiled code is shared with ``jax.jit``'s
    caches, so a repeated call with the same shapes compiles nothing.

    Yields
    ------
    size : int
        Steps in this chunk.
    step : callable
        The compiled function for ``size`` steps.
    bar : tqdm
        The progress bar (for ``set_postfix``); it advances by ``size`` after each chunk.
    """
    total = int(sum(sizes))
    with tqdm(total=total, desc=f"{desc}: compiling", disable=verbose <= 0) as bar:
        compiled = {size: compile_chunk(size) for size in sorted(set(sizes))}
        bar.set_description(desc)
        bar.reset(total=total)
        for size in sizes:
            yield size, compiled[size], bar
            bar.update(size)


# ---------------------------------------------------------------------------------------
# NUTS
# ---------------------------------------------------------------------------------------


class NUTSResult(NamedTuple):
    """Draws of a NUTS run.

    Attributes
    ----------
    samples : dict of str to array of shape (num_chains, num_samples, ...)
        Posterior draws of every latent site (and deterministic site).
    diverging : array of shape (num_chains, num_samples)
        Whether each transition diverged.
    accept_prob : array of shape (num_chains, num_samples)
        Mean Metropolis acceptance probability of each transition.
    num_steps : array of shape (num_chains, num_samples)
        Leapfrog steps of each transition.
    potential_energy : array of shape (num_chains, num_samples)
        Negative unnormalised log posterior of each draw.
    """

    samples: dict[str, jax.Array]
    diverging: jax.Array
    accept_prob: jax.Array
    num_steps: jax.Array
    potential_energy: jax.Array


def _nuts_kernel(model, key, args, kwargs, z, num_warmup, target_accept_prob, max_tree_depth):
    """Initialise NumPyro's functional NUTS for one chain.

    NumPyro's ``sample_kernel`` reads settings that ``init_kernel`` binds, so every jitted
    function below re-runs this (the duplicate work is dead code after tracing).
    """
    info = initialize_model(key, model, model_args=args, model_kwargs=kwargs, dynamic_args=True)
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    z = info.param_info.z if z is None else z
    state = init_kernel(
        z,
        num_warmup,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        model_args=args,
        model_kwargs=kwargs,
        rng_key=key,
    )
    return state, sample_kernel, info.postprocess_fn


_NUTS_STATIC = ("model", "num_warmup", "max_tree_depth")


@partial(jax.jit, static_argnames=_NUTS_STATIC)
def _nuts_init(model, keys, init_z, args, kwargs, target_accept_prob, num_warmup, max_tree_depth):
    def one(key, z):
        return _nuts_kernel(
            model, key, args, kwargs, z, num_warmup, target_accept_prob, max_tree_depth
        )[0]

    return jax.vmap(one)(keys, init_z)


@partial(jax.jit, static_argnames=_NUTS_STATIC + ("length",))
def _nuts_steps(
    model, states, args, kwargs, target_accept_prob, num_warmup, max_tree_depth, length
):
    def one(state):
        _, sample_kernel, _ = _nuts_kernel(
            model,
            state.rng_key,
            args,
            kwargs,
            state.z,
            num_warmup,
            target_accept_prob,
            max_tree_depth,
        )

        def step(s, _):
            s = sample_kernel(s, model_args=args, model_kwargs=kwargs)
            return s, (s.z, s.diverging, s.accept_prob, s.num_steps, s.potential_energy)

        return jax.lax.scan(step, state, None, length=length)

    return jax.vmap(one)(states)


@partial(jax.jit, static_argnames=("model",))
def _nuts_constrain(model, key, z, args, kwargs):
    info = initialize_model(key, model, model_args=args, model_kwargs=kwargs, dynamic_args=True)
    constrain = info.postprocess_fn(*args, **kwargs)
    return jax.vmap(jax.vmap(constrain))(z)


def _chunks(total: int, chunk: int) -> list[int]:
    sizes = [chunk] * (total // chunk)
    if total % chunk:
        sizes.append(total % chunk)
    return sizes


def _phase_chunks(num_warmup: int, num_samples: int, n_chunks: int) -> list[int]:
    """Scan lengths covering warm-up then sampling, split exactly at ``num_warmup``.

    One length throughout where the two counts allow it (each distinct length is a
    compilation of the whole NUTS step): the largest divisor of gcd(num_warmup,
    num_samples) that gives at least ``n_chunks`` chunks, if that is at most 100 chunks.
    Otherwise each phase in chunks of about ``total / n_chunks`` steps.
    """
    total = num_warmup + num_samples
    g = math.gcd(num_warmup, num_samples)
    target = max(1, total // n_chunks)
    chunk = max(d for d in range(1, g + 1) if g % d == 0 and d <= target)
    if total // chunk <= 100:
        return [chunk] * (total // chunk)
    if n_chunks <= 1:
        return [num_warmup, num_samples]
    return _chunks(num_warmup, target) + _chunks(num_samples, target)


def _shard_chains(tree):
    """Place the chain axis across ``jax.devices()`` when it divides evenly."""
    devices = jax.devices()
    leaves = jax.tree_util.tree_leaves(tree)
    if len(devices) < 2 or not leaves or leaves[0].shape[0] % len(devices):
        return tree
    mesh = Mesh(np.array(devices), ("chain",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("chain")))


def run_nuts(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    init_params: dict[str, Any] | None = None,
    verbose: int = 0,
    **model_kwargs: Any,
) -> NUTSResult:
    """Sample a NumPyro model's posterior with NUTS.

    Warm-up and sampling are ``lax.scan`` loops over NumPyro's functional NUTS kernel
    inside our own jitted functions, keyed on (model, shapes, ``num_warmup``,
    ``max_tree_depth``): calling again with new data of the same shapes, a new key or a new
    ``target_accept_prob`` compiles nothing (``MCMC.run`` recompiles its collection loop on
    every call). Chains are vectorised and, when their number is a multiple of the device
    count, sharded across ``jax.devices()``. The model's arguments are traced, so anything
    that sets a shape must come from an array's shape. Computation runs in float64.

    Parameters
    ----------
    model : callable
        A NumPyro model (a plain, module-level function so that compiled code is reused).
    *model_args, **model_kwargs
        Arguments of the model (arrays or Python scalars; traced).
    key : jax.Array
        PRNG key.
    num_warmup, num_samples, num_chains : int
        Warm-up and kept draws per chain, and number of chains.
    target_accept_prob, max_tree_depth : float, int
        NUTS settings (Hoffman & Gelman, 2014).
    init_params : dict, optional
        Unconstrained initial values per site, with a leading chain axis.
    verbose : int, default=0
        ``> 0`` shows a progress bar (steps run in chunks).

    Returns
    -------
    NUTSResult

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> def model():
    ...     numpyro.sample("x", dist.Normal(1.0, 2.0))
    >>> res = run_nuts(model, key=jax.random.PRNGKey(0), num_warmup=200, num_samples=400)
    >>> res.samples["x"].shape
    (1, 400)
    """
    if min(num_warmup, num_samples, num_chains) < 1 or max_tree_depth < 1:
        raise ValueError(
            "num_warmup, num_samples, num_chains and max_tree_depth must be positive; got "
            f"{num_warmup}, {num_samples}, {num_chains}, {max_tree_depth}."
        )
    with x64_scope():
        args = jax.tree_util.tree_map(_as_float64, model_args)
        kwargs = jax.tree_util.tree_map(_as_float64, model_kwargs)
        key_init, key_post = jax.random.split(key)
        keys = _shard_chains(jax.random.split(key_init, num_chains))
        if init_params is not None:
            init_params = _shard_chains(
                jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), init_params)
            )
        tap = jnp.asarray(target_accept_prob, jnp.float64)
        statics = dict(num_warmup=int(num_warmup), max_tree_depth=int(max_tree_depth))
        states = _nuts_init(model, keys, init_params, args, kwargs, tap, **statics)
        sizes = _phase_chunks(num_warmup, num_samples, 20 if verbose > 0 else 1)

        def compile_chunk(size):
            return compile_ahead(_nuts_steps, model, states, args, kwargs, tap, **statics,
                                 length=size)  # fmt: skip

        outputs, done = [], 0
        for size, step, _ in progress_chunks(sizes, compile_chunk, verbose=verbose, desc="NUTS"):
            states, out = step(states, args, kwargs, tap)
            if done >= num_warmup:
                outputs.append(out)
            done += size
        z, diverging, accept, steps, energy = jax.tree_util.tree_map(
            lambda *parts: jnp.concatenate(parts, axis=1), *outputs
        )
        samples = _nuts_constrain(model, key_post, z, args, kwargs)
        return NUTSResult(
            samples=dict(samples),
            diverging=diverging,
            accept_prob=accept,
            num_steps=steps,
            potential_energy=energy,
        )


def _as_float64(x):
    if isinstance(x, float) or (hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)):
        return jnp.asarray(x, jnp.float64)
    return x


# ---------------------------------------------------------------------------------------
# SVI
# ---------------------------------------------------------------------------------------


class SVIResult(NamedTuple):
    """Result of :func:`run_svi`.

    Attributes
    ----------
    params : dict of str to array
        Optimised variational parameters (constrained space, as ``SVI.get_params``).
    losses : array of shape (num_steps,)
        ELBO loss (negative ELBO estimate) per step.
    state : numpyro.infer.svi.SVIState
        Final optimiser state, to resume.
    """

    params: dict[str, jax.Array]
    losses: jax.Array
    state: Any


_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")


def _make_svi(model, guide, optimizer: str, num_particles: int, learning_rate) -> SVI:
    tx = optax.inject_hyperparams(getattr(optax, optimizer))(learning_rate=learning_rate)
    return SVI(model, guide, optax_to_numpyro(tx), Trace_ELBO(num_particles=num_particles))


@partial(jax.jit, static_argnames=("model", "guide", "optimizer", "num_particles"))
def _svi_init(model, guide, optimizer, num_particles, key, learning_rate, args, kwargs):
    svi = _make_svi(model, guide, optimizer, num_particles, learning_rate)
    return svi.init(key, *args, **kwargs)


@partial(jax.jit, static_argnames=("model", "guide", "optimizer", "num_particles", "num_steps"))
def _svi_steps(model, guide, optimizer, num_particles, num_steps, state, args, kwargs):
    # The learning rate lives in the optimiser state (inject_hyperparams), so the value
    # passed here is a placeholder that update() never reads.
    svi = _make_svi(model, guide, optimizer, num_particles, 0.0)
    # init() binds the constrain function update() needs; its outputs are dead code.
    svi.init(state.rng_key, *args, **kwargs)

    def body(carry, _):
        new_state, loss = svi.update(carry, *args, **kwargs)
        return new_state, loss

    return jax.lax.scan(body, state, None, length=num_steps)


@partial(jax.jit, static_argnames=("model", "guide", "optimizer", "num_particles"))
def _svi_params(model, guide, optimizer, num_particles, state, args, kwargs):
    svi = _make_svi(model, guide, optimizer, num_particles, 0.0)
    svi.init(state.rng_key, *args, **kwargs)
    return svi.get_params(state)


def run_svi(
    model: Callable,
    guide: Callable,
    *model_args: Any,
    key: jax.Array,
    num_steps: int = 1000,
    learning_rate: float = 1e-2,
    optimizer: str = "adam",
    num_particles: int = 1,
    verbose: int = 0,
    **model_kwargs: Any,
) -> SVIResult:
    """Fit a guide to a NumPyro model by maximising the ELBO.

    The SVI update runs inside a jitted ``lax.scan`` compiled once per (model, guide,
    optimiser, shapes); ``learning_rate`` is traced, so a sweep over it never recompiles. With
    ``verbose > 0`` the steps run in 20 equal chunks under a tqdm bar whose clock starts
    after compilation (:func:`progress_chunks`; one extra compile for a remainder chunk).

    Parameters
    ----------
    model, guide : callable
        NumPyro model and guide (module-level functions or a cached auto-guide object).
    *model_args, **model_kwargs
        Arguments of both (arrays).
    key : jax.Array
        PRNG key.
    num_steps : int, default=1000
        Optimisation steps.
    learning_rate : float, default=1e-2
        Step size (traced).
    optimizer : {"adam", "adamw", "sgd", "rmsprop", "adagrad"}, default="adam"
        An optax optimiser by name.
    num_particles : int, default=1
        Monte Carlo samples per ELBO estimate.
    verbose : int, default=0
        ``> 0`` shows a progress bar.

    Returns
    -------
    SVIResult
    """
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}; got {optimizer!r}.")
    if num_steps < 1:
        raise ValueError(f"num_steps must be a positive int; got {num_steps}.")
    with x64_scope():
        lr = jnp.asarray(learning_rate, dtype=jnp.float64)
        state = _svi_init(model, guide, optimizer, num_particles, key, lr, model_args, model_kwargs)
        statics = (model, guide, optimizer, num_particles)

        def compile_chunk(size):
            return compile_ahead(_svi_steps, *statics, size, state, model_args, model_kwargs)

        losses = []
        sizes = chunk_sizes(num_steps, verbose)
        for _, step, bar in progress_chunks(sizes, compile_chunk, verbose=verbose, desc="SVI"):
            state, chunk_losses = step(state, model_args, model_kwargs)
            losses.append(chunk_losses)
            if verbose > 0:
                bar.set_postfix(loss=f"{float(chunk_losses[-1]):.4g}")
        losses = jnp.concatenate(losses)
        params = _svi_params(*statics, state, model_args, model_kwargs)
        return SVIResult(params=params, losses=losses, state=state)
