r"""The expectation-maximisation engine for Gaussian mixtures (one for the whole project).

One jitted, shardable EM loop serves every Gaussian-mixture estimator: maximum likelihood
(scikit-learn's ``GaussianMixture`` steps), an optional Normal-Inverse-Wishart MAP prior
(:mod:`mixtures.niw`), optional clamped labels (semi-supervised: a labelled sample's
responsibility is fixed to its class component) and soft or hard (classification-EM)
assignment.

Layout and cost. Data are laid out as row blocks ``(n_blocks, block_size, n_features)``.
With :math:`q_i = [\mathrm{vech}(x_i x_i^\top), x_i]` the log joint of every component is
one GEMM, :math:`\log\pi_k + \log\mathcal N(x_i;\mu_k,\Sigma_k) = q_i C + c`
(:meth:`mixtures.distributions.GaussianMixture.quadratic_coefficients`), and the sufficient
statistics :math:`\sum_i r_{ik} x_i` and :math:`\sum_i r_{ik} x_i x_i^\top` are the columns
of :math:`R^\top Q`: about :math:`2NKD^2` flops per iteration and no
``(n_samples, n_components, n_features)`` temporary. The blocks are a ``lax.scan`` (peak
memory is one block times ``n_components``) sharded over ``jax.devices()`` with
:func:`jax.shard_map` (per-device partial sums, then ``psum``).

Components can be *inactive* (weight exactly zero), so a caller that changes the number of
components (split/merge) can pad to a few sizes and rarely recompile.

Functions
---------
- :func:`fit_em` -- the whole loop from initial parameters, on an array (blocks, pads,
  centres and shards for you) -- what estimators call.
- :func:`e_step`, :func:`m_step` -- one step each, for tests and teaching; one
  :func:`e_step` + :func:`m_step` equals one iteration of scikit-learn's ``GaussianMixture``.
- :func:`fit_em_blocks`, :func:`sufficient_stats`, :func:`map_m_step`,
  :func:`log_joint_blocks`, :func:`block_layout`, :func:`to_blocks`, :func:`make_mesh` --
  the functional core on blocked data.

References
----------
A. P. Dempster, N. M. Laird, D. B. Rubin. Maximum likelihood from incomplete data via the
EM algorithm. JRSS B, 1977.
G. Celeux, G. Govaert. A classification EM algorithm for clustering and two stochastic
versions. Computational Statistics & Data Analysis, 1992 (hard assignment).
C. Fraley, A. E. Raftery. Bayesian regularization for normal mixture estimation and
model-based clustering. Journal of Classification, 2007 (the MAP M-step).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mixtures.base import x64_scope
from mixtures.distributions import COVARIANCE_TYPES, GaussianMixture, vech_features
from mixtures.niw import NIWPrior, niw_map

__all__ = [
    "ASSIGNMENTS",
    "BlockedData",
    "EMResult",
    "GaussianMixtureParams",
    "SufficientStats",
    "block_layout",
    "check_initial_parameters",
    "covariances_from_full",
    "covariances_to_full",
    "e_step",
    "fit_em",
    "fit_em_blocks",
    "log_joint_blocks",
    "m_step",
    "make_mesh",
    "map_m_step",
    "maximum_likelihood_prior",
    "n_parameters",
    "sufficient_stats",
    "to_blocks",
]

ASSIGNMENTS = ("soft", "hard")


class GaussianMixtureParams(NamedTuple):
    """Mixture parameters ``(weights (K,), means (K, D), covariances)``.

    Inside the engine covariances are always full ``(K, D, D)`` matrices; :func:`m_step`,
    :func:`e_step` and :func:`fit_em` accept and return the layout of ``covariance_type``
    (scikit-learn's: ``(K, D, D)``, ``(K, D)`` or ``(K,)``).
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array


class SufficientStats(NamedTuple):
    """Responsibility-weighted statistics of one E-step (raw moments about the origin).

    Attributes
    ----------
    counts : (K,)   :math:`N_k = \\sum_i w_i r_{ik}`
    sums : (K, D)   :math:`\\sum_i w_i r_{ik} x_i`
    scatter : (K, D, D)   :math:`\\sum_i w_i r_{ik} x_i x_i^\\top`
    log_lik : ()   :math:`\\sum_i w_i \\log p(x_i, [y_i])` (labelled samples: the joint with
        their class; hard assignment: the classification log-likelihood)
    total_weight : ()   :math:`\\sum_i w_i`
    """

    counts: jax.Array
    sums: jax.Array
    scatter: jax.Array
    log_lik: jax.Array
    total_weight: jax.Array


class EMResult(NamedTuple):
    """Result of :func:`fit_em` / :func:`fit_em_blocks`.

    Attributes
    ----------
    params : GaussianMixtureParams
        Final parameters (after the last M-step).
    lower_bounds : array of shape (max_iter,)
        Mean log-likelihood per sample at each E-step (NaN past ``n_iter``).
    lower_bound : scalar array
        The last one: the mean log-likelihood at the parameters *before* the last M-step,
        as scikit-learn reports it.
    n_iter : int array
        Iterations run.
    converged : bool array
        Whether the change of the bound fell below ``tol``.
    """

    params: GaussianMixtureParams
    lower_bounds: jax.Array
    lower_bound: jax.Array
    n_iter: jax.Array
    converged: jax.Array


class BlockedData(NamedTuple):
    """Data laid out for the engine by :func:`to_blocks`.

    ``xs`` (n_blocks, B, D) centred rows, ``ys`` (n_blocks, B) int labels (``-1``
    unlabelled), ``ws`` (n_blocks, B) sample weights (0 on padding rows); ``offset`` (D,)
    is the centre subtracted from the rows, ``n_samples`` the number of real rows.
    """

    xs: jax.Array
    ys: jax.Array
    ws: jax.Array
    offset: np.ndarray
    n_samples: int


def make_mesh(devices=None) -> Mesh:
    """A one-axis (``"data"``) mesh over ``devices`` (default: all of ``jax.devices()``)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), ("data",))


def block_layout(n_samples: int, n_components: int, n_features: int, n_devices: int = 1):
    """Choose ``(block_size, n_blocks)`` for the engine.

    A block's ``[vech(x x^T), x]`` features plus its ``n_components`` log joints hold at
    most about 2**20 floats and at most 4096 rows (blocks that stay in cache were the
    fastest on the CPU); ``n_blocks`` is a multiple of ``n_devices``.
    """
    width = n_features * (n_features + 3) // 2 + n_components
    target = max(64, (1 << 20) // max(1, width))
    block = 1 << int(math.floor(math.log2(min(target, 4096))))
    per_dev = -(-n_samples // n_devices)
    block = max(8, min(block, 1 << int(math.ceil(math.log2(max(per_dev, 1))))))
    n_blocks = -(-per_dev // block) * n_devices
    return block, n_blocks


def to_blocks(X, y=None, sample_weight=None, *, n_components: int, mesh: Mesh | None = None,
              center: bool = True) -> BlockedData:  # fmt: skip
    """Centre, pad and block ``X`` (and labels / weights) and put the blocks on ``mesh``.

    Call inside :func:`mixtures.base.x64_scope`. Centring (subtracting the data mean)
    keeps the raw-moment statistics accurate in float64; :func:`fit_em` adds the offset
    back to the means.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    mesh = make_mesh() if mesh is None else mesh
    block, n_blocks = block_layout(n, n_components, d, mesh.devices.size)
    rows = block * n_blocks
    offset = X.mean(0) if center else np.zeros(d)
    xs = np.zeros((rows, d))
    np.subtract(X, offset, out=xs[:n])
    ys = np.full(rows, -1, dtype=np.int32)
    if y is not None:
        ys[:n] = np.asarray(y)
    ws = np.zeros(rows)
    ws[:n] = 1.0 if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sharding = NamedSharding(mesh, P("data"))
    put = functools.partial(jax.device_put, device=sharding)
    return BlockedData(
        put(jnp.asarray(xs.reshape(n_blocks, block, d))),
        put(jnp.asarray(ys.reshape(n_blocks, block))),
        put(jnp.asarray(ws.reshape(n_blocks, block))),
        offset,
        n,
    )


def maximum_likelihood_prior(n_features: int, dtype=np.float64) -> NIWPrior:
    """The NIW hyperparameters under which the MAP M-step is maximum likelihood.

    :math:`\\kappa_0 = 0`, :math:`\\nu_0 = -(D + 2)`, :math:`\\Psi_0 = 0` turn the MAP
    covariance :math:`(\\Psi_0 + S_k + \\dots)/(\\nu_0 + N_k + D + 2)` into :math:`S_k / N_k`.
    """
    d = int(n_features)
    return NIWPrior(np.zeros(d, dtype), 0.0, -(d + 2.0), np.zeros((d, d), dtype))


def _mixture(params: GaussianMixtureParams, active) -> GaussianMixture:
    """The active components as a GaussianMixture (inactive ones: weight 0, unit Gaussian)."""
    d = params.means.shape[-1]
    weights = jnp.where(active, params.weights, 0.0)
    means = jnp.where(active[:, None], params.means, 0.0)
    eye = jnp.eye(d, dtype=params.covariances.dtype)
    covs = jnp.where(active[:, None, None], params.covariances, eye)
    return GaussianMixture(weights, means, covs, "full")


def _local_stats(xs, ys, ws, coef, const, assignment, clamp):
    """Blocked E-step and statistics on one device: two GEMMs per block (``clamp``: some
    rows are labelled; static, so unlabelled data skip the clamping ops)."""
    k = const.shape[0]
    d = xs.shape[-1]
    dt = xs.dtype
    n_sym = coef.shape[0] - d

    def body(carry, blk):
        xb, yb, wb = blk
        q = vech_features(xb)
        lp = q @ coef + const
        if assignment == "soft":
            lse = logsumexp(lp, axis=1)
            free = jnp.exp(lp - lse[:, None])
            ll_free = lse
        else:  # classification EM: each unlabelled sample goes to its most probable component
            best = jnp.argmax(lp, axis=1)
            free = jax.nn.one_hot(best, k, dtype=dt)
            ll_free = jnp.max(lp, axis=1)
        if clamp:  # clamped responsibilities: r_ik = 1[k = y_i] for labelled samples
            labelled = yb >= 0
            ysafe = jnp.where(labelled, yb, 0)
            free = jnp.where(labelled[:, None], jax.nn.one_hot(ysafe, k, dtype=dt), free)
            ll_lab = jnp.take_along_axis(lp, ysafe[:, None], axis=1)[:, 0]
            ll_free = jnp.where(labelled, ll_lab, ll_free)
        resp = free * wb[:, None]
        ll = jnp.sum(jnp.where(wb > 0, ll_free * wb, 0.0))
        counts, rq, tot_ll, tot_w = carry
        return (counts + resp.sum(0), rq + resp.T @ q, tot_ll + ll, tot_w + wb.sum()), None

    init = (
        jnp.zeros((k,), dt),
        jnp.zeros((k, n_sym + d), dt),
        jnp.zeros((), dt),
        jnp.zeros((), dt),
    )
    (counts, rq, tot_ll, tot_w), _ = lax.scan(body, init, (xs, ys, ws))
    sums, scat = _unpack_moments(rq, d)
    return counts, sums, scat, tot_ll, tot_w


def _unpack_moments(rq, d):
    """``R^T q`` -> first moments (K, D) and symmetric second moments (K, D, D)."""
    k = rq.shape[0]
    n_sym = d * (d + 1) // 2
    iu, ju = np.triu_indices(d)
    scat = jnp.zeros((k, d, d), rq.dtype).at[:, iu, ju].set(rq[:, :n_sym])
    scat = scat.at[:, ju, iu].set(rq[:, :n_sym])
    return rq[:, n_sym:], scat


def sufficient_stats(
    data: BlockedData, params: GaussianMixtureParams, active, *, mesh: Mesh,
    assignment: str = "soft", clamp: bool = True,
) -> SufficientStats:  # fmt: skip
    r"""E-step and sufficient statistics, sharded over ``mesh`` (traceable).

    .. math::

        r_{ik} = \mathbb 1[k = y_i]\ (y_i \ge 0), \qquad
        r_{ik} = \frac{\pi_k \mathcal N(x_i; \mu_k, \Sigma_k)}
                      {\sum_j \pi_j \mathcal N(x_i; \mu_j, \Sigma_j)}\ (y_i = -1)

    (Dempster et al., 1977, the E-step; the labelled rows are clamped). ``"hard"`` replaces
    the second by a one-hot of its argmax (Celeux & Govaert, 1992).
    """
    coef, const = _mixture(params, active).quadratic_coefficients()

    def local(xs, ys, ws, coef, const):
        out = _local_stats(xs, ys, ws, coef, const, assignment, clamp)
        return tuple(lax.psum(a, "data") for a in out)

    fn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P("data"), P("data"), P("data"), P(), P()),
        out_specs=P(),
        check_vma=False,
    )
    return SufficientStats(*fn(data.xs, data.ys, data.ws, coef, const))


def map_m_step(
    stats: SufficientStats, prior: NIWPrior, reg_covar, active, covariance_type: str = "full"
) -> GaussianMixtureParams:
    r"""NIW-MAP M-step from soft statistics (traceable; covariances returned full).

    With :math:`\bar x_k = \sum_i r_{ik} x_i / N_k` and
    :math:`S_k = \sum_i r_{ik}(x_i - \bar x_k)(x_i - \bar x_k)^\top`, the MAP of
    :func:`mixtures.niw.niw_map` (Fraley & Raftery, 2007, eqs. 5-6),

    .. math::

        \pi_k = \frac{N_k}{\sum_j N_j},\quad
        \mu_k = \frac{N_k \bar x_k + \kappa_0 m_0}{N_k + \kappa_0},\quad
        \Sigma_k = \frac{\Psi_0 + S_k + \frac{\kappa_0 N_k}{\kappa_0 + N_k}
        (\bar x_k - m_0)(\bar x_k - m_0)^\top}{\nu_0 + N_k + D + 2} + \epsilon I,

    with :math:`\epsilon` = ``reg_covar``. Under :func:`maximum_likelihood_prior` this is
    the M-step of scikit-learn's ``GaussianMixture``. ``"diag"`` and ``"spherical"`` keep the
    diagonal (its mean) before :math:`\epsilon` is added. An inactive or empty component
    keeps a valid covariance (the prior's scale, or the identity without a prior).
    """
    dt = stats.sums.dtype
    d = stats.sums.shape[-1]
    eps = 10 * jnp.finfo(dt).eps
    n = stats.counts
    xbar = stats.sums / jnp.maximum(n, eps)[:, None]
    scat = stats.scatter - n[:, None, None] * xbar[:, :, None] * xbar[:, None, :]
    means, cov = niw_map(n, xbar, scat, prior)
    eye = jnp.eye(d, dtype=dt)
    if covariance_type == "diag":
        cov = jnp.diagonal(cov, 0, -2, -1)[:, :, None] * eye
    elif covariance_type == "spherical":
        cov = jnp.mean(jnp.diagonal(cov, 0, -2, -1), -1)[:, None, None] * eye
    cov = cov + reg_covar * eye
    psi = jnp.asarray(prior.psi, dt)
    fallback = psi / (prior.nu + d + 2) + reg_covar * eye
    fallback = jnp.where(jnp.trace(fallback) > 0, fallback, eye)
    cov = jnp.where((active & (n > eps))[:, None, None], cov, fallback)
    means = jnp.where(active[:, None], means, jnp.asarray(prior.mean, dt))
    nk = jnp.where(active, n + eps, 0.0)
    return GaussianMixtureParams(nk / jnp.sum(nk), means, cov)


@functools.partial(
    jax.jit, static_argnames=("mesh", "covariance_type", "assignment", "max_iter", "clamp")
)
def fit_em_blocks(
    data: BlockedData,
    params0: GaussianMixtureParams,
    active,
    prior: NIWPrior,
    reg_covar,
    tol,
    *,
    max_iter: int,
    mesh: Mesh,
    covariance_type: str = "full",
    assignment: str = "soft",
    clamp: bool = True,
) -> EMResult:
    """EM on blocked data until the mean log-likelihood changes by less than ``tol``.

    Continuous hyperparameters (the prior, ``reg_covar``, ``tol``) are traced, so changing
    them never recompiles; ``max_iter``, ``covariance_type``, ``assignment``, ``clamp``
    (whether any row is labelled) and the mesh are structural. Parameters are in the
    engine's full-covariance layout, for the centred rows of ``data``.
    """
    dt = data.xs.dtype

    def cond(state):
        it, _, _, _, conv = state
        return (it < max_iter) & (~conv)

    def body(state):
        it, params, bounds, lb, _ = state
        st = sufficient_stats(data, params, active, mesh=mesh, assignment=assignment, clamp=clamp)
        lb_new = st.log_lik / st.total_weight
        new = map_m_step(st, prior, reg_covar, active, covariance_type)
        conv = jnp.abs(lb_new - lb) < tol
        return it + 1, new, bounds.at[it].set(lb_new), lb_new, conv

    state = (
        jnp.asarray(0, jnp.int32),
        params0,
        jnp.full((max_iter,), jnp.nan, dt),
        jnp.asarray(-jnp.inf, dt),
        jnp.asarray(False),
    )
    it, params, bounds, lb, conv = lax.while_loop(cond, body, state)
    return EMResult(params, bounds, lb, it, conv)


@functools.partial(jax.jit, static_argnames=("mesh",))
def _log_joint_blocks(xs, params, active, mesh):
    coef, const = _mixture(params, active).quadratic_coefficients()

    def local(xs, coef, const):
        return lax.map(lambda xb: vech_features(xb) @ coef + const, xs)

    return jax.shard_map(
        local, mesh=mesh, in_specs=(P("data"), P(), P()), out_specs=P("data"), check_vma=False
    )(xs, coef, const)


def log_joint_blocks(data: BlockedData, params: GaussianMixtureParams, active=None, *,
                     mesh: Mesh | None = None) -> jax.Array:  # fmt: skip
    """Log joints :math:`\\log\\pi_k + \\log\\mathcal N(x_i;\\mu_k,\\Sigma_k)`, (n_blocks, B, K).

    ``params`` are for the centred rows (means minus ``data.offset``), full layout.
    """
    k = params.means.shape[0]
    active = jnp.ones(k, bool) if active is None else jnp.asarray(active)
    mesh = make_mesh() if mesh is None else mesh
    return _log_joint_blocks(data.xs, params, active, mesh)


# ---------------------------------------------------------------------------------------
# array-level API
# ---------------------------------------------------------------------------------------


def _check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )


def covariances_to_full(covariances, covariance_type: str, n_features: int):
    """Covariances in scikit-learn's layout -> full ``(K, D, D)`` matrices (NumPy or JAX)."""
    _check_covariance_type(covariance_type)
    xp = jnp if isinstance(covariances, jax.Array) else np
    c = xp.asarray(covariances)
    eye = xp.eye(n_features, dtype=c.dtype)
    if covariance_type == "diag":
        return c[:, :, None] * eye
    if covariance_type == "spherical":
        return c[:, None, None] * eye
    return c


def covariances_from_full(covariances, covariance_type: str):
    """Full ``(K, D, D)`` matrices -> scikit-learn's layout for ``covariance_type``."""
    _check_covariance_type(covariance_type)
    xp = jnp if isinstance(covariances, jax.Array) else np
    c = xp.asarray(covariances)
    if covariance_type == "diag":
        return xp.diagonal(c, 0, -2, -1)
    if covariance_type == "spherical":
        return xp.diagonal(c, 0, -2, -1).mean(-1)
    return c


def _prior_for(prior: NIWPrior | None, d: int, offset) -> NIWPrior:
    if prior is None:
        return maximum_likelihood_prior(d)
    mean = np.asarray(prior.mean, dtype=np.float64)
    psi = np.asarray(prior.psi, dtype=np.float64)
    if mean.shape != (d,) or psi.shape != (d, d):
        raise ValueError(
            f"prior must have mean of shape ({d},) and psi of shape ({d}, {d}) to match X; got "
            f"{mean.shape} and {psi.shape}. Build the prior on the same features."
        )
    return NIWPrior(mean - offset, float(prior.kappa), float(prior.nu), psi)


def _as_prior_arrays(prior: NIWPrior) -> NIWPrior:
    return NIWPrior(
        jnp.asarray(prior.mean, jnp.float64),
        jnp.asarray(prior.kappa, jnp.float64),
        jnp.asarray(prior.nu, jnp.float64),
        jnp.asarray(prior.psi, jnp.float64),
    )


def fit_em(
    X,
    init_params: GaussianMixtureParams,
    *,
    y=None,
    sample_weight=None,
    prior: NIWPrior | None = None,
    covariance_type: str = "full",
    assignment: str = "soft",
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    max_iter: int = 100,
    active=None,
    mesh: Mesh | None = None,
) -> EMResult:
    """Fit a Gaussian mixture by EM from given initial parameters.

    The loop stops when the mean log-likelihood changes by less than ``tol``
    (scikit-learn's rule) or after ``max_iter`` iterations. Without ``y`` and ``prior``
    each iteration is exactly :func:`e_step` then :func:`m_step`, scikit-learn's
    ``GaussianMixture`` iteration. Runs in float64 whatever the global JAX setting;
    ``reg_covar``, ``tol`` and the prior are traced (no recompilation when they change).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    init_params : GaussianMixtureParams
        Covariances in the layout of ``covariance_type``.
    y : array-like of int of shape (n_samples,), optional
        Clamped labels: a sample with ``y_i >= 0`` belongs to component ``y_i``; ``-1``
        marks an unlabelled sample (semi-supervised EM).
    sample_weight : array-like of shape (n_samples,), optional
    prior : mixtures.niw.NIWPrior, optional
        NIW prior for MAP estimation (default: maximum likelihood).
    covariance_type : {"full", "diag", "spherical"}, default="full"
    assignment : {"soft", "hard"}, default="soft"
        ``"hard"``: classification EM (each unlabelled sample to its most probable
        component; the bound is then the classification log-likelihood).
    reg_covar, tol : float
    max_iter : int
    active : bool array of shape (K,), optional
        Components that take part (others keep weight zero).
    mesh : jax.sharding.Mesh, optional
        Devices to shard the rows over (default all of ``jax.devices()``).

    Returns
    -------
    EMResult
        Parameters in the layout of ``covariance_type``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-3, 1, (50, 1)), rng.normal(3, 1, (50, 1))]
    >>> init = GaussianMixtureParams(np.array([.5, .5]), np.array([[-1.], [1.]]),
    ...                              np.ones((2, 1, 1)))
    >>> res = fit_em(X, init)
    >>> bool(res.converged), np.round(np.sort(np.asarray(res.params.means[:, 0]))).tolist()
    (True, [-3.0, 3.0])
    """
    _check_covariance_type(covariance_type)
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}; got {assignment!r}.")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}.")
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    w0, m0, c0 = (np.asarray(p, dtype=np.float64) for p in init_params)
    k = m0.shape[0]
    with x64_scope():
        mesh = make_mesh() if mesh is None else mesh
        data = to_blocks(X, y, sample_weight, n_components=k, mesh=mesh)
        pr = _prior_for(prior, d, data.offset)
        params0 = GaussianMixtureParams(
            jnp.asarray(w0),
            jnp.asarray(m0 - data.offset),
            jnp.asarray(covariances_to_full(c0, covariance_type, d)),
        )
        act = jnp.ones(k, bool) if active is None else jnp.asarray(active, bool)
        res = fit_em_blocks(
            data,
            params0,
            act,
            _as_prior_arrays(pr),
            jnp.asarray(reg_covar, jnp.float64),
            jnp.asarray(tol, jnp.float64),
            max_iter=int(max_iter),
            mesh=mesh,
            covariance_type=covariance_type,
            assignment=assignment,
            clamp=y is not None and bool(np.any(np.asarray(y) >= 0)),
        )
        w, m, c = res.params
        params = GaussianMixtureParams(
            w, m + jnp.asarray(data.offset), covariances_from_full(c, covariance_type)
        )
        return res._replace(params=params)


def e_step(X, params: GaussianMixtureParams, covariance_type: str = "full"):
    r"""E-step: log responsibilities and the mean log-likelihood.

    .. math::

        \log r_{ik} = \log \pi_k + \log\mathcal N(x_i;\mu_k,\Sigma_k)
                      - \log\sum_j \pi_j \mathcal N(x_i;\mu_j,\Sigma_j)

    Returns
    -------
    log_resp : array of shape (n_samples, K)
    mean_log_likelihood : scalar array
    """
    X = jnp.asarray(X)
    d = X.shape[1]
    w, m, c = params
    gm = GaussianMixture(w, m, covariances_to_full(jnp.asarray(c), covariance_type, d))
    weighted = gm.log_weights + gm.component_log_prob(X)
    log_norm = logsumexp(weighted, axis=-1)
    return weighted - log_norm[:, None], jnp.mean(log_norm)


def m_step(X, resp, reg_covar, covariance_type: str = "full", prior: NIWPrior | None = None):
    r"""M-step from responsibilities: :func:`map_m_step` on their statistics.

    Maximum likelihood without ``prior`` (scikit-learn's ``_estimate_gaussian_parameters``
    plus ``reg_covar``). Covariances are returned in the layout of ``covariance_type``.
    Traceable; call inside :func:`mixtures.base.x64_scope` for float64.
    """
    X = jnp.asarray(X)
    resp = jnp.asarray(resp, X.dtype)
    d = X.shape[1]
    offset = jnp.mean(X, 0)
    Xc = X - offset
    sums, scatter = _unpack_moments(resp.T @ vech_features(Xc), d)
    stats = SufficientStats(
        resp.sum(0), sums, scatter, jnp.zeros((), X.dtype), jnp.asarray(X.shape[0], X.dtype)
    )
    pr = maximum_likelihood_prior(d) if prior is None else prior
    pr = NIWPrior(
        jnp.asarray(pr.mean, X.dtype) - offset,
        jnp.asarray(pr.kappa, X.dtype),
        jnp.asarray(pr.nu, X.dtype),
        jnp.asarray(pr.psi, X.dtype),
    )
    active = jnp.ones(resp.shape[1], bool)
    w, m, c = map_m_step(stats, pr, reg_covar, active, covariance_type)
    return GaussianMixtureParams(w, m + offset, covariances_from_full(c, covariance_type))


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of a Gaussian mixture (for BIC/AIC), as scikit-learn counts them."""
    _check_covariance_type(covariance_type)
    cov = {
        "full": n_components * n_features * (n_features + 1) / 2.0,
        "diag": n_components * n_features,
        "spherical": n_components,
    }[covariance_type]
    return int(cov + n_components * n_features + n_components - 1)


def check_initial_parameters(
    weights_init, means_init, precisions_init, *, n_components: int, n_features: int,
    covariance_type: str,
):  # fmt: skip
    """Validate user-given starting parameters (scikit-learn's ``*_init`` arguments).

    Returns ``(weights, means, covariances)`` with ``None`` for what was not given;
    covariances are full ``(K, D, D)`` matrices (the inverses of ``precisions_init``, which
    is in scikit-learn's layout for ``covariance_type``).

    Raises
    ------
    ValueError
        If a shape does not match ``(n_components, n_features)``, the weights are not a
        probability vector, or a precision is not positive definite / positive.
    """
    k, d = int(n_components), int(n_features)
    w = m = c = None
    if weights_init is not None:
        w = np.asarray(weights_init, dtype=np.float64)
        if w.shape != (k,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(
                f"weights_init must be {k} non-negative finite numbers (one per component); got "
                f"shape {w.shape}."
            )
        if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError(f"weights_init must sum to 1; got {w.sum():.6g}. Normalise them.")
    if means_init is not None:
        m = np.asarray(means_init, dtype=np.float64)
        if m.shape != (k, d) or not np.all(np.isfinite(m)):
            raise ValueError(
                f"means_init must be a finite array of shape (n_components, n_features) = "
                f"({k}, {d}); got shape {m.shape}."
            )
    if precisions_init is not None:
        _check_covariance_type(covariance_type)
        p = np.asarray(precisions_init, dtype=np.float64)
        want = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
        if p.shape != want or not np.all(np.isfinite(p)):
            raise ValueError(
                f"precisions_init for covariance_type={covariance_type!r} must be a finite array "
                f"of shape {want}; got shape {p.shape}."
            )
        if covariance_type == "full":
            try:
                np.linalg.cholesky(p)
            except np.linalg.LinAlgError:
                raise ValueError(
                    "precisions_init must hold symmetric positive-definite matrices."
                ) from None
            c = np.linalg.inv(p)
        else:
            if np.any(p <= 0):
                raise ValueError("precisions_init must be positive.")
            c = covariances_to_full(1.0 / p, covariance_type, d)
    return w, m, c
