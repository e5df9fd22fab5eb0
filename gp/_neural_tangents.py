"""The one place that imports neural-tangents.

neural-tangents 0.6.5 (its last release) imports a handful of names that current JAX
removed, and its ``experimental`` sub-package imports TensorFlow. This module restores
the removed aliases, registers an empty ``neural_tangents.experimental`` module, and
then imports the library, so the rest of mixproc can use ``stax``, ``predict``,
``batch``, ``monte_carlo_kernel_fn`` and ``empirical_ntk_fn`` on a current JAX without
TensorFlow installed.

The shim only *adds* missing attributes; it never overwrites what JAX provides. The
test ``tests/gp/test_neural_tangents_compat.py`` compares neural-tangents' NNGP/NTK
kernels with the closed-form arc-cosine recursions to 1e-10 in float64, so a JAX
upgrade that breaks this shim fails loudly.
"""

from __future__ import annotations

import sys
import types

import jax
import jax.core
import jax.extend.core
import jax.interpreters.ad

__all__ = ["nt", "stax"]


def _restore_jax_aliases() -> None:
    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive", "ClosedJaxpr"):
        if not hasattr(jax.core, name):
            setattr(jax.core, name, getattr(jax.extend.core, name))
    if "jax.util" not in sys.modules and not hasattr(jax, "util"):
        from jax._src import util as _src_util

        util = types.ModuleType("jax.util")
        util.safe_map = _src_util.safe_map
        util.safe_zip = _src_util.safe_zip
        sys.modules["jax.util"] = util
        jax.util = util
    ad = jax.interpreters.ad
    for name in ("zeros_like_p", "add_jaxvals_p"):
        if not hasattr(ad, name):
            # Only used as dictionary keys in neural-tangents' Jacobian rule tables;
            # the primitives no longer exist in JAX, so they never match an equation.
            setattr(ad, name, jax.extend.core.Primitive(f"mixproc_unused_{name}"))
    if "neural_tangents.experimental" not in sys.modules:
        # The only neural-tangents module that needs TensorFlow (jax2tf / tf2jax).
        sys.modules["neural_tangents.experimental"] = types.ModuleType(
            "neural_tangents.experimental"
        )


_restore_jax_aliases()

try:
    import neural_tangents as nt
    from neural_tangents import stax
except ModuleNotFoundError as err:  # pragma: no cover (exercised in a clean venv by CI)
    if err.name not in ("neural_tangents", "frozendict"):
        raise
    raise ImportError(
        "gp needs neural-tangents, installed without its TensorFlow dependencies (gp never "
        "uses TensorFlow): pip install --no-deps neural-tangents==0.6.5 frozendict"
    ) from err
