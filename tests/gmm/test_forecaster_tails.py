"""Student-t (gamma scale mixture) predictive of the trajectory forecaster: the shared-scale
trajectory density, the metrics with ``df``, sampling, learning of ``df`` and refits."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from scipy.linalg import block_diag
from sklearn.base import clone

import gmm._forecaster as core
from gmm import KinematicGMMForecaster
from gmm._trajectory_mixture import step_mixture, trajectory_log_prob
from gmm.metrics import mixture_coverage, nll
from mixtures.base import x64_scope


def _mixture(rng, N=3, K=2, T=4):
    w = rng.dirichlet(np.ones(K), N)
    mu = rng.normal(size=(N, K, T, 2))
    A = rng.normal(size=(N, K, T, 2, 2))
    S = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(2)
    return w, mu, S


def test_trajectory_density_is_the_2T_variate_t_with_block_diagonal_scale():
    rng = np.random.default_rng(0)
    w, mu, S = _mixture(rng)
    y = rng.normal(size=(3, 4, 2))
    df = 3.3
    with x64_scope():
        m = step_mixture(jnp.asarray(w), jnp.asarray(mu), jnp.asarray(S), df)
        traj = np.asarray(trajectory_log_prob(m, jnp.asarray(y)))
        step = np.asarray(m.log_prob(jnp.asarray(y)))
    ref = [
        np.log(
            sum(
                w[n, k]
                * st.multivariate_t(mu[n, k].ravel(), block_diag(*S[n, k]), df=df).pdf(y[n].ravel())
                for k in range(2)
            )
        )
        for n in range(3)
    ]
    np.testing.assert_allclose(traj, ref, rtol=1e-12)
    ref_step = [
        [
            np.log(sum(w[n, k] * st.multivariate_t(mu[n, k, t], S[n, k, t], df=df).pdf(y[n, t])
                       for k in range(2)))
            for t in range(4)
        ]
        for n in range(3)
    ]  # fmt: skip
    np.testing.assert_allclose(step, ref_step, rtol=1e-12)
    # the metrics take the same df
    assert nll(y, w, mu, S, df=df) == pytest.approx(-np.mean(ref_step), rel=1e-12)
    assert nll(y, w, mu, S, df=df, per="trajectory") == pytest.approx(-np.mean(ref), rel=1e-12)
    with pytest.raises(ValueError, match="positive number"):
        nll(y, w, mu, S, df=-1.0)


def test_mixture_coverage_is_nominal_for_draws_of_a_t_mixture():
    rng = np.random.default_rng(1)
    N, df = 3000, 3.0
    w, mu, S = _mixture(rng, N=N, K=2, T=1)
    comp = (rng.random(N) > w[:, 0]).astype(int)
    L = np.linalg.cholesky(S[np.arange(N), comp, 0])
    g = rng.gamma(df / 2, 2 / df, N)
    y = mu[np.arange(N), comp, 0] + np.einsum("nij,nj->ni", L, rng.standard_normal((N, 2)))
    y = (y - mu[np.arange(N), comp, 0]) / np.sqrt(g)[:, None] + mu[np.arange(N), comp, 0]
    r = mixture_coverage(y[:, None], w, mu, S, df=df, n_samples=400)
    # N = 3000 agents: binomial SE <= 0.009, Monte Carlo threshold noise adds less
    np.testing.assert_allclose(r.coverage, r.expected, atol=0.03)
    # the Gaussian reading of the same parameters under-covers the heavy tails at 2 sigma
    assert mixture_coverage(y[:, None], w, mu, S, n_samples=400).coverage[1] < r.expected[1] - 0.05


@pytest.fixture(scope="module")
def walkers():
    """Straight walkers whose futures are off by one common gamma scale (t-distributed)."""
    rng = np.random.default_rng(0)
    n, H, T, dt = 600, 5, 6, 0.4
    hist = np.zeros((n, H, 2))
    hist[..., 0] = np.arange(-H + 1, 1) * dt
    fut = np.zeros((n, T, 2))
    fut[..., 0] = np.arange(1, T + 1) * dt
    g = rng.gamma(1.0, 1.0, n)  # df 2: heavy tails
    fut += 0.1 * rng.standard_normal((n, T, 2)) / np.sqrt(g)[:, None, None]
    return hist, fut


def test_fixed_df_samples_score_and_pickle(walkers):
    hist, fut = walkers
    f = KinematicGMMForecaster(
        n_modes=1, formulation="position", dt=0.4, hidden_sizes=(16,), epochs=5, df=3.0,
        min_std=0.05, random_state=0,
    ).fit(hist, fut)  # fmt: skip
    assert f.df_ == 3.0
    probs, means, covs = f.predict_gaussians(hist[:2])
    assert f.score(hist, fut) == pytest.approx(-nll(fut, *f.predict_gaussians(hist), df=3.0))
    # position samples: every step's squared Mahalanobis / 2 is F(2, df) (t marginal)
    s = f.sample(hist[:2], n_samples=4000, random_state=0)
    d = s[0, :, 3] - means[0, 0, 3]
    m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(covs[0, 0, 3]), d)
    assert st.kstest(m2 / 2, st.f(2, 3.0).cdf).pvalue > 1e-3
    # a trajectory shares one scale: steps' Mahalanobis terms are correlated
    d1 = s[0, :, 1] - means[0, 0, 1]
    m1 = np.einsum("ni,ij,nj->n", d1, np.linalg.inv(covs[0, 0, 1]), d1)
    assert st.spearmanr(m1, m2).statistic > 0.2
    import pickle

    back = pickle.loads(pickle.dumps(f))
    assert back.df_ == f.df_ and back.score(hist, fut) == f.score(hist, fut)
    with x64_scope():
        assert type(f.predictive_distribution(hist[:2])).__name__ == "StudentTMixture"


def test_kinematic_samples_follow_the_student_t_predictive(walkers):
    """Kinematic samples: controls drawn and integrated, the floor ``min_std`` drawn at
    every step, both under the trajectory's one gamma scale. Every step's squared
    Mahalanobis distance / 2 under the predictive scale matrix is then F(2, df), also
    at step 1, where the acceleration head propagates no variance and the floor is the
    whole scale matrix."""
    hist, fut = walkers
    f = KinematicGMMForecaster(
        n_modes=1, formulation="acceleration", dt=0.4, hidden_sizes=(16,), epochs=5,
        df=3.0, min_std=0.05, random_state=0,
    ).fit(hist, fut)  # fmt: skip
    _, means, covs = f.predict_gaussians(hist[:1])
    s = f.sample(hist[:1], n_samples=4000, random_state=0)
    for t in (0, 2, fut.shape[1] - 1):
        d = s[0, :, t] - means[0, 0, t]
        m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(covs[0, 0, t]), d)
        assert st.kstest(m2 / 2, st.f(2, 3.0).cdf).pvalue > 1e-3, t


def test_learned_df_follows_the_tails_and_refits_compile_nothing(walkers):
    hist, fut = walkers
    kw = dict(
        n_modes=1, formulation="position", dt=0.4, hidden_sizes=(16,), epochs=30,
        batch_size=100, learning_rate=1e-2, min_std=0.02, random_state=0, df="learn",
    )  # fmt: skip
    heavy = KinematicGMMForecaster(**kw).fit(hist, fut)
    rng = np.random.default_rng(1)
    light_fut = fut.copy()
    light_fut[..., 1] = 0.1 * rng.standard_normal(fut.shape[:2])
    light_fut[..., 0] = (
        hist[0, -1, 0] + np.arange(1, 7) * 0.4 + 0.1 * rng.standard_normal(fut.shape[:2])
    )
    light = KinematicGMMForecaster(**kw).fit(hist, light_fut)
    # starts at 5: gamma(1) scales (df 2) pull it down, Gaussian noise pushes it up
    # (slowly: the likelihood is flat in df when the data are Gaussian)
    assert heavy.df_ < 4.0 and light.df_ > 5.2
    gauss = KinematicGMMForecaster(**{**kw, "df": None}).fit(hist, fut)
    assert heavy.score(hist, fut) > gauss.score(hist, fut) + 0.05
    # another fixed df or N is a traced input: no recompile
    fixed = clone(heavy).set_params(df=4.0, epochs=2).fit(hist, fut)
    before = core._train_steps._cache_size(), core._forward_jit._cache_size()
    clone(fixed).set_params(df=7.5).fit(hist[:123], fut[:123])
    assert (core._train_steps._cache_size(), core._forward_jit._cache_size()) == before
    with pytest.raises(ValueError, match="df"):
        clone(heavy).set_params(df=0.0).fit(hist, fut)
    with pytest.raises(ValueError, match="df"):
        clone(heavy).set_params(df="auto").fit(hist, fut)
