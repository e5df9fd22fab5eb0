"""neural-tangents on current JAX (through ``gp._neural_tangents``) against closed forms.

Guards the compatibility shim: the analytic NNGP/NTK of stax Dense/ReLU and Dense/Erf
networks must equal the arc-cosine recursions (gp._arccos) to 1e-10 in float64,
and the pieces of neural-tangents mixproc uses (``predict.gradient_descent_mse_ensemble``,
``batch``, ``monte_carlo_kernel_fn``, ``empirical_ntk_fn`` implementations 1 and 2) must
return the right numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gp._arccos import arccos_kernel
from gp._neural_tangents import nt, stax
from mixtures.base import x64_scope

RS = np.random.RandomState(0)
X1 = RS.randn(7, 3)
X2 = RS.randn(5, 3)


def _stax_net(architecture, depth, activation, W_std, b_std, readout, width=8, out_dim=1):
    act = {"relu": stax.Relu(), "erf": stax.Erf()}[activation]
    if architecture == "mlp":
        layers = [stax.Dense(width, W_std, b_std), act]
        for _ in range(depth - 1):
            layers += [stax.Dense(width, W_std, b_std), act]
        layers += [stax.Dense(out_dim, readout)]
    else:
        block = stax.serial(
            stax.FanOut(2),
            stax.parallel(stax.Identity(), stax.serial(act, stax.Dense(width, W_std, b_std))),
            stax.FanInSum(),
        )
        layers = [stax.Dense(width, W_std, b_std)] + [block] * depth + [act, stax.Dense(1, readout)]
    return stax.serial(*layers)


@pytest.mark.filterwarnings("ignore:`FanIn` layers")
@pytest.mark.parametrize("architecture", ["mlp", "resnet"])
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize(("depth", "W_std", "b_std"), [(1, 1.0, 0.0), (3, 2.0, 1.0)])
def test_analytic_kernels_equal_arccos_recursions(architecture, activation, depth, W_std, b_std):
    with x64_scope():
        kernel_fn = _stax_net(architecture, depth, activation, W_std, b_std, readout=1.3)[2]
        got = kernel_fn(X1, X2, ("nngp", "ntk"))
        # one closed-form evaluation (one compilation) on [X1; X2] gives both references:
        # its off-diagonal block is k(X1, X2), its leading block k(X1, X1)
        full = arccos_kernel(
            np.concatenate([X1, X2]),
            depth=depth,
            W_std=W_std,
            b_std=b_std,
            readout_W_std=1.3,
            activation=activation,
            architecture=architecture,
        )
        n1 = len(X1)
        ref = type(full)(*(np.asarray(a)[:n1, n1:] for a in full))
        assert got.nngp.dtype == jnp.float64
        # Distinct inputs: both are the same float64 arithmetic, so 1e-10 relative to the
        # kernel's scale is a loose bound (observed ~1e-15).
        scale_k = float(jnp.max(jnp.abs(ref.nngp)))
        scale_t = float(jnp.max(jnp.abs(ref.ntk)))
        np.testing.assert_allclose(got.nngp, ref.nngp, rtol=0, atol=1e-10 * scale_k)
        np.testing.assert_allclose(got.ntk, ref.ntk, rtol=0, atol=1e-10 * scale_t)

        got = kernel_fn(X1, None, ("nngp", "ntk"))
        ref = type(full)(*(np.asarray(a)[:n1, :n1] for a in full))
        off = ~np.eye(len(X1), dtype=bool)
        np.testing.assert_allclose(got.nngp, ref.nngp, rtol=0, atol=1e-10 * float(ref.nngp.max()))
        np.testing.assert_allclose(
            np.asarray(got.ntk)[off],
            np.asarray(ref.ntk)[off],
            rtol=0,
            atol=1e-10 * float(ref.ntk.max()),
        )
        # On the diagonal the ReLU angle is arccos(1 - ulp) ~ 2e-8 rad in neural-tangents but
        # exactly 0 here; E[phi' phi''] then differs by ~2e-8/(2 pi) per layer, so the
        # diagonal NTK agrees to ~1e-8 relative per layer; 1e-6 covers depth 3.
        np.testing.assert_allclose(np.diag(got.ntk), np.diag(ref.ntk), rtol=1e-6)


def test_batch_equals_unbatched():
    with x64_scope():
        kernel_fn = _stax_net("mlp", 2, "relu", 1.5, 0.1, readout=1.0)[2]
        batched = nt.batch(kernel_fn, batch_size=2, store_on_device=False)
        want = kernel_fn(X1[:6], X2[:4], ("nngp", "ntk"))
        got = batched(X1[:6], X2[:4], ("nngp", "ntk"))
        # batching only re-partitions the same float64 arithmetic
        np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-12, atol=1e-14)


def test_monte_carlo_kernel_converges_to_analytic():
    with x64_scope():
        init_fn, apply_fn, kernel_fn = _stax_net(
            "mlp", 2, "erf", 1.5, 0.1, readout=1.0, width=128, out_dim=128
        )
        exact = np.asarray(kernel_fn(X1[:4], X2[:3], "nngp"))
        # One sampler (one compilation) yielding running averages after 8, 16, 24, 32
        # networks; the four disjoint chunks of 8 networks are independent estimates.
        mc = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), (8, 16, 24, 32))
        running = [np.asarray(k) for k in mc(X1[:4], X2[:3], "nngp")]
        counts = [8, 16, 24, 32]
        estimates = [running[0]] + [
            (counts[i] * running[i] - counts[i - 1] * running[i - 1]) / 8 for i in range(1, 4)
        ]
        estimates = np.stack(estimates)
        mean = estimates.mean(0)
        np.testing.assert_allclose(mean, running[-1], rtol=1e-10, atol=1e-12)
        se = estimates.std(0, ddof=1) / np.sqrt(len(estimates))
        # 4 independent MC estimates (8 width-128 networks with 128 outputs each, averaged
        # over outputs): the analytic kernel must lie within 5 standard errors plus the
        # O(1/width) finite-width bias (~ 4/128).
        assert np.all(np.abs(mean - exact) < 5 * se + 4.0 / 128 * np.abs(exact).max())
        # and the estimate is informative: its error is small relative to the kernel
        assert np.abs(mean - exact).max() < 0.1 * np.abs(exact).max()


def test_empirical_ntk_equals_jacobian_contraction():
    with x64_scope():
        init_fn, apply_fn, _ = _stax_net("mlp", 2, "relu", 1.5, 0.1, readout=1.0, width=16)
        _, params = init_fn(jax.random.PRNGKey(1), X1.shape)
        flat, unravel = ravel_pytree(params)

        def f(w, x):
            return apply_fn(unravel(w), x)[:, 0]

        # jitted: eager op-by-op Jacobians cost ~5x more CPU than one compilation
        jac = jax.jit(jax.jacobian(f))(flat, jnp.asarray(np.concatenate([X1, X2])))
        j1, j2 = jac[: len(X1)], jac[len(X1) :]
        for implementation in (1, 2):  # Jacobian contraction, NTK-vector products
            ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, implementation=implementation))
            got = ntk_fn(X1, X2, params)
            # brute-force J1 J2^T with the same float64 parameters
            np.testing.assert_allclose(got, j1 @ j2.T, rtol=1e-10, atol=1e-12)


def test_gradient_descent_mse_ensemble_equals_closed_form():
    with x64_scope():
        kernel_fn = _stax_net("mlp", 2, "relu", 1.5, 0.1, readout=1.0)[2]
        y = np.sin(X1[:, :1])
        eta = 1e-2
        predict = nt.predict.gradient_descent_mse_ensemble(kernel_fn, X1, y, diag_reg=eta)
        k = kernel_fn(X1, None, ("nngp", "ntk"))
        ks = kernel_fn(X2, X1, ("nngp", "ntk"))
        kss = kernel_fn(X2, None, ("nngp", "ntk"))
        n = len(X1)

        def reg(m):
            return np.asarray(m) + eta * np.trace(m) / n * np.eye(n)  # relative diag_reg

        # NNGP: Bayesian posterior mean and latent covariance
        mean, cov = predict(None, X2, "nngp", compute_cov=True)
        khat = reg(k.nngp)
        np.testing.assert_allclose(mean, ks.nngp @ np.linalg.solve(khat, y), rtol=1e-9, atol=1e-10)
        want = kss.nngp - ks.nngp @ np.linalg.solve(khat, ks.nngp.T)
        np.testing.assert_allclose(cov, want, rtol=1e-8, atol=1e-10)
        # NTK ensemble: regularised Theta, unregularised K in the middle
        mean, cov = predict(None, X2, "ntk", compute_cov=True)
        that = reg(k.ntk)
        a = ks.ntk @ np.linalg.inv(that)
        np.testing.assert_allclose(mean, a @ y, rtol=1e-9, atol=1e-10)
        want = kss.nngp + a @ k.nngp @ a.T - (a @ ks.nngp.T + ks.nngp @ a.T)
        np.testing.assert_allclose(cov, want, rtol=1e-7, atol=1e-9)
