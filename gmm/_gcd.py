"""The full GPC method: contrastive representation learning alternating with the SS-GMM.

A JAX/optax projection head over given (frozen) features is trained with the GCD
contrastive losses, InfoNCE and SupCon (Vaze et al., 2022), plus the prototypical loss of
GPC (Zhao, Wen & Han, 2023); the prototypes, their concentrations and the pseudo-labels
come from the semi-supervised GMM with split/merge (the E-step), re-fitted on the current
embedding every epoch.

Adaptations to frozen features: GPC fine-tunes the last block of a ViT backbone on image
augmentations, which given feature vectors cannot do. Here the two "views" of a sample
are feature-space augmentations (Gaussian jitter and feature dropout), and the
prototypical loss acts on the head's embedding ``z`` (the only trainable representation)
instead of on the backbone features.

References
----------
S. Vaze, K. Han, A. Vedaldi, A. Zisserman, "Generalized Category Discovery", CVPR 2022.

B. Zhao, X. Wen, K. Han, "Learning Semi-supervised Gaussian Mixture Models for
Generalized Category Discovery", ICCV 2023.

P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

J. Li, P. Zhou, C. Xiong, S. C. H. Hoi, "Prototypical Contrastive Learning of
Unsupervised Representations", ICLR 2021.
"""

from __future__ import annotations

import functools
from numbers import Integral, Real

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import Interval
from tqdm.auto import tqdm

from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    check_finite_result,
    component_classes,
    encode_semi_labels,
    random_state_to_generator,
    random_state_to_key,
    x64_scope,
)

from ._ssgmm import SemiSupervisedGMM

__all__ = [
    "GeneralizedCategoryDiscovery",
    "concentration",
    "info_nce_loss",
    "prototype_loss",
    "supcon_loss",
]


def _normalise(z, eps=1e-12):
    """Rows scaled to unit norm; rows of norm <= ``eps`` map to zero, with zero gradient.

    ``z / max(||z||, eps)`` would be NaN-free in the forward pass but not in the backward
    one: the gradient of ``||z||`` at ``z = 0`` is ``0 / 0``. A feature-dropout view that
    drops every feature (likely with few features) is such a row at initialisation.
    """
    sq = jnp.sum(z * z, axis=-1, keepdims=True)
    ok = sq > eps**2
    return jnp.where(ok, z / jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def info_nce_loss(z1, z2, temperature):
    """InfoNCE over the ``2B`` views (the unsupervised loss of Vaze et al., 2022).

    .. math::

        L_u = -\\frac{1}{2B}\\sum_i \\log \\frac{\\exp(z_i\\cdot z_{i^+}/\\tau_u)}
        {\\sum_{j \\ne i}\\exp(z_i\\cdot z_j/\\tau_u)}
    """
    z = jnp.concatenate([z1, z2])
    n = z.shape[0]
    b = n // 2
    logits = z @ z.T / temperature
    logits = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits)
    pos = jnp.concatenate([jnp.arange(b, n), jnp.arange(0, b)])
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(logp[jnp.arange(n), pos])


def supcon_loss(z1, z2, labels, temperature):
    """Supervised contrastive loss (Khosla et al., 2020) over the labelled views.

    .. math::

        L_s = -\\frac{1}{|A|}\\sum_{i\\in A}\\frac{1}{|P(i)|}\\sum_{p\\in P(i)}
        \\log\\frac{\\exp(z_i\\cdot z_p/\\tau)}{\\sum_{j\\ne i}\\exp(z_i\\cdot z_j/\\tau)}

    over anchors ``A`` with ``labels >= 0``; ``P(i)`` = other views of the same class.
    Unlabelled views (``-1``) are excluded entirely.
    """
    z = jnp.concatenate([z1, z2])
    lab = jnp.concatenate([labels, labels])
    n = z.shape[0]
    valid = lab >= 0
    eye = jnp.eye(n, dtype=bool)
    keep = valid[:, None] & valid[None, :] & ~eye
    logits = jnp.where(keep, z @ z.T / temperature, -jnp.inf)
    logp = jax.nn.log_softmax(jnp.where(valid[:, None], logits, 0.0), axis=1)
    pos = (lab[:, None] == lab[None, :]) & keep
    npos = pos.sum(1)
    per = -jnp.sum(jnp.where(pos, logp, 0.0), 1) / jnp.maximum(npos, 1)
    anchor = valid & (npos > 0)
    return jnp.sum(jnp.where(anchor, per, 0.0)) / jnp.maximum(anchor.sum(), 1)


def prototype_loss(z1, z2, targets, prototypes, phi, proto_mask):
    """Prototypical contrastive loss (Li et al., 2021, as used by Zhao et al., 2023).

    .. math::

        L_{proto} = \\tfrac12 \\mathrm{CE}\\big(\\mathrm{softmax}_j(\\langle q,\\hat c_j\\rangle
        /\\phi_j), y_i\\big) + \\tfrac12 \\mathrm{CE}\\big(\\mathrm{softmax}_j(\\langle k,
        \\hat c_j\\rangle/\\phi_j), y_i\\big)

    with :math:`q, k` the two views' embeddings, :math:`\\hat c_j` the unit-norm
    prototypes (padding masked out by ``proto_mask``), :math:`\\phi_j` their
    concentrations and :math:`y_i` the target prototype (the class for labelled samples,
    the pseudo-label otherwise).
    """

    def ce(z):
        logits = jnp.where(proto_mask, z @ prototypes.T / phi, -jnp.inf)
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, targets[:, None], 1))

    return 0.5 * ce(z1) + 0.5 * ce(z2)


def concentration(Z, labels, centres, temperature=1.0):
    """GPC concentration ``phi_j = mean ||z - c_j|| / log(N_j + 10)``, NumPy.

    As in PCL (Li et al., 2021) and GPC's released code: clusters with at most one
    member get the maximum; then clipped to the 10th-90th percentiles and rescaled to
    mean ``temperature``. A small ``phi_j`` (a tight cluster) sharpens its logits.
    """
    k = centres.shape[0]
    phi = np.zeros(k)
    for j in range(k):
        members = Z[labels == j]
        if members.shape[0] > 1:
            dist = np.linalg.norm(members - centres[j], axis=1)
            phi[j] = dist.mean() / np.log(members.shape[0] + 10)
    big = phi.max() if phi.max() > 0 else 1.0
    counts = np.bincount(labels, minlength=k)
    phi = np.where(counts <= 1, big, phi)
    phi = np.clip(phi, np.percentile(phi, 10), np.percentile(phi, 90))
    phi = np.maximum(phi, 1e-6)
    return temperature * phi / phi.mean()


def _init_head(key, X, hidden, d_out):
    """Residual head ``z = normalise(x P + MLP(x))``: ``P`` starts at the top principal
    directions of ``X`` (a rotation when ``d_out = D``) and the MLP's last layer at zero, so
    the first E-step sees (a projection of) the input features themselves."""
    d_in = X.shape[1]
    _, _, vt = jnp.linalg.svd(X - X.mean(0), full_matrices=False)
    proj = jnp.zeros((d_in, d_out)).at[:, : min(d_in, d_out)].set(vt[:d_out].T)
    return {
        "proj": proj,
        "w1": jax.random.normal(key, (d_in, hidden)) * jnp.sqrt(2.0 / d_in),
        "b1": jnp.zeros(hidden),
        "w2": jnp.zeros((hidden, d_out)),
        "b2": jnp.zeros(d_out),
    }


def _apply_head(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return _normalise(x @ params["proj"] + h @ params["w2"] + params["b2"])


def _augment(key, x, noise_std, drop_p):
    k1, k2 = jax.random.split(key)
    keep = jax.random.bernoulli(k2, 1.0 - drop_p, x.shape)
    return (x + noise_std * jax.random.normal(k1, x.shape)) * keep / (1.0 - drop_p)


def _make_optimizer(learning_rate):
    """Adam with the learning rate in the optimiser state (traced: no recompile)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)


@functools.partial(jax.jit, static_argnames=("use_proto",))
def _train_step(params, opt_state, key, xb, yb, tb, protos, phi, pmask, hyper, *, use_proto):
    """One Adam step on ``(1 - lambda) L_u + lambda L_s (+ w L_proto)``.

    Only ``use_proto`` is static; every continuous hyperparameter (``hyper``, and the
    learning rate inside ``opt_state``) is traced, so refits never recompile.
    """
    noise_std, drop_p, tau_u, tau_s, lam, w_proto = hyper
    optimizer = _make_optimizer(0.0)  # the learning rate lives (traced) in opt_state

    def loss_fn(p):
        k1, k2 = jax.random.split(key)
        z1 = _apply_head(p, _augment(k1, xb, noise_std, drop_p))
        z2 = _apply_head(p, _augment(k2, xb, noise_std, drop_p))
        loss = (1 - lam) * info_nce_loss(z1, z2, tau_u) + lam * supcon_loss(z1, z2, yb, tau_s)
        if use_proto:
            loss = loss + w_proto * prototype_loss(z1, z2, tb, protos, phi, pmask)
        return loss

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@jax.jit
def _embed(params, X):
    return _apply_head(params, X)


class GeneralizedCategoryDiscovery(MixprocEstimator):
    """GPC: alternate contrastive representation learning and the split/merge SS-GMM.

    Generalized category discovery (Vaze et al., 2022) by the alternation of GPC (Zhao,
    Wen & Han, 2023). Each epoch: (E) embed all samples, fit :class:`SemiSupervisedGMM`
    (warm-started at the previous K) to get prototypes ``c_j`` (normalised component
    means), concentrations ``phi_j`` and pseudo-labels; (M) train the projection head for
    ``steps_per_epoch`` Adam steps on

    .. math::

        L = (1 - \\lambda)\\, L_u + \\lambda\\, L_s + w\\, L_{proto}

    (InfoNCE, SupCon and the prototypical loss; :func:`info_nce_loss`,
    :func:`supcon_loss`, :func:`prototype_loss`) with batches that draw labelled and
    unlabelled samples equally often. The first ``warmup_epochs`` epochs train without
    ``L_proto`` and without an E-step. Unlabelled samples are finally assigned to their
    nearest prototype (cosine).

    Parameters
    ----------
    n_components : int or None, default=None
        Starting K of the first E-step (``None``: the SS-GMM's data-driven guess).
    embedding_dim : int or None, default=None
        ``None`` keeps the input dimension (the head starts as a rotation of the input).
    hidden_dim : int, default=128
        Width of the head's residual MLP.
    n_epochs : int, default=5
        Number of E/M alternations.
    warmup_epochs : int, default=1
        Leading epochs without the prototypical loss.
    steps_per_epoch : int, default=50
        Adam steps per M-step.
    batch_size : int, default=256
        Samples per step (at least 2: the contrastive losses need negatives; capped at
        ``n_samples``).
    learning_rate : float, default=1e-3
        Adam step size.
    sup_weight : float in [0, 1], default=0.35
        ``lambda``, the SupCon share of the representation loss.
    temperature_u, temperature_s : float, default=1.0, 0.07
        InfoNCE and SupCon temperatures (GCD's values); ``temperature_u`` also sets the
        mean concentration of the prototypes.
    proto_weight : float, default=1.0
        ``w``, the weight of the prototypical loss.
    noise_std : float, default=0.05
        Std of the Gaussian jitter of the two views.
    drop_prob : float in [0, 1), default=0.1
        Feature-dropout probability of the two views.
    gmm_params : dict, optional
        Extra arguments of :class:`SemiSupervisedGMM` (default ``max_rounds=3``,
        ``max_iter=30``).
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Seeds the head initialisation, the augmentations, the batches and every E-step.
    unlabelled : "auto" or scalar, default="auto"
        The label of an unlabelled sample: with ``"auto"``, ``-1`` for integer labels and
        ``None`` for string labels (:func:`mixtures.base.encode_semi_labels`).
    verbose : int, default=0
        ``>0`` shows a tqdm progress bar over epochs.

    Attributes
    ----------
    classes_ : ndarray of shape (n_components,)
        The id of each prototype, as returned by ``predict``: the known classes' own ids
        (sorted) first, then new ids that cannot collide with them
        (:func:`mixtures.base.component_classes`).
    n_components_ : int
    prototypes_ : ndarray of shape (n_components, embedding_dim)
    labels_ : ndarray of shape (n_samples,)
        Training assignments in ``classes_`` ids.
    history_ : dict of lists (``"n_components"``, ``"loss"`` per epoch)
    gmm_ : SemiSupervisedGMM (the last E-step)
    head_params_ : dict of ndarray
        The projection head's weights.

    References
    ----------
    S. Vaze, K. Han, A. Vedaldi, A. Zisserman, "Generalized Category Discovery", CVPR
    2022.

    B. Zhao, X. Wen, K. Han, "Learning Semi-supervised Gaussian Mixture Models for
    Generalized Category Discovery", ICCV 2023.
    """

    _parameter_constraints = {
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "embedding_dim": [None, Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "steps_per_epoch": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "sup_weight": [Interval(Real, 0, 1, closed="both")],
        "temperature_u": [Interval(Real, 0, None, closed="neither")],
        "temperature_s": [Interval(Real, 0, None, closed="neither")],
        "proto_weight": [Interval(Real, 0, None, closed="left")],
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "drop_prob": [Interval(Real, 0, 1, closed="left")],
        "gmm_params": [None, dict],
        "random_state": RANDOM_STATE,
        "unlabelled": "no_validation",
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=None,
        *,
        embedding_dim=None,
        hidden_dim=128,
        n_epochs=5,
        warmup_epochs=1,
        steps_per_epoch=50,
        batch_size=256,
        learning_rate=1e-3,
        sup_weight=0.35,
        temperature_u=1.0,
        temperature_s=0.07,
        proto_weight=1.0,
        noise_std=0.05,
        drop_prob=0.1,
        gmm_params=None,
        random_state=None,
        unlabelled="auto",
        verbose=0,
    ):
        self.n_components = n_components
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.n_epochs = n_epochs
        self.warmup_epochs = warmup_epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.sup_weight = sup_weight
        self.temperature_u = temperature_u
        self.temperature_s = temperature_s
        self.proto_weight = proto_weight
        self.noise_std = noise_std
        self.drop_prob = drop_prob
        self.gmm_params = gmm_params
        self.random_state = random_state
        self.unlabelled = unlabelled
        self.verbose = verbose

    def _fit_prototypes(self, Z, y, k0, seed):
        """The E-step: SS-GMM on the embedding; unit-norm prototypes, concentrations."""
        kw = {"max_rounds": 3, "max_iter": 30}
        kw.update(self.gmm_params or {})
        gmm = SemiSupervisedGMM(k0, random_state=seed, **kw).fit(Z, y)
        norms = np.linalg.norm(gmm.means_, axis=1, keepdims=True)
        protos = gmm.means_ / np.maximum(norms, 1e-12)
        phi = concentration(Z, gmm.labels_, gmm.means_, self.temperature_u)
        return gmm, protos, phi

    def _check_own_result(self, what, value, epoch):
        """Raise if the model itself produced a NaN/inf (the input was checked finite)."""
        check_finite_result(
            f"{type(self).__name__}'s {what} (epoch {epoch})",
            value,
            "X was checked and is finite, so this is a numerical failure of the model: "
            "lower learning_rate, raise temperature_s / temperature_u, lower proto_weight "
            "or standardise X.",
        )

    def fit(self, X, y=None):
        """Fit on features ``X`` with semi-supervised labels ``y`` (-1 = unlabelled).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Class ids of the labelled samples (any integers or strings) and the
            ``unlabelled`` marker (``-1``, or ``None`` for strings) for the others.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On invalid parameters or data, or if training produces a non-finite loss or
            embedding (a numerical failure of the model; the message names the remedy).
        """
        self._validate_params()
        X = self._validate_X(X, reset=True, ensure_min_samples=2)
        n, d = X.shape
        enc = encode_semi_labels(y, n, self.n_components, unlabelled=self.unlabelled)
        y = enc.codes  # 0..L-1 known, -1 unlabelled; the inner SS-GMM works on these
        key = random_state_to_key(self.random_state)
        rng = random_state_to_generator(self.random_state)
        lab_idx, unl_idx = np.flatnonzero(y >= 0), np.flatnonzero(y < 0)
        bs = int(min(self.batch_size, n))
        with x64_scope():
            key, sub = jax.random.split(key)
            emb = d if self.embedding_dim is None else int(self.embedding_dim)
            params = _init_head(sub, jnp.asarray(X), int(self.hidden_dim), emb)
            opt_state = _make_optimizer(jnp.asarray(self.learning_rate, jnp.float64)).init(params)
            hyper = tuple(
                jnp.asarray(v, jnp.float64)
                for v in (
                    self.noise_std, self.drop_prob, self.temperature_u, self.temperature_s,
                    self.sup_weight, self.proto_weight,
                )
            )  # fmt: skip
            Xj = jnp.asarray(X)
            k_cur = self.n_components
            history = {"n_components": [], "loss": []}
            for epoch in tqdm(range(int(self.n_epochs)), disable=not self.verbose, desc="GCD"):
                use_proto = epoch >= int(self.warmup_epochs)
                if use_proto:  # E-step on the current embedding
                    Z = np.asarray(_embed(params, Xj))
                    self._check_own_result("embedding", Z, epoch)
                    gmm, protos, phi = self._fit_prototypes(
                        Z, y, k_cur, int(rng.integers(2**31 - 1))
                    )
                    k_cur = gmm.n_components_
                    kb = max(16, -(-k_cur // 8) * 8)  # pad prototypes: few recompiles
                    P = np.zeros((kb, protos.shape[1]))
                    P[:k_cur] = protos
                    ph = np.ones(kb)
                    ph[:k_cur] = phi
                    pmask = np.arange(kb) < k_cur
                    targets = gmm.labels_
                else:
                    kb = 16
                    P, ph = np.zeros((kb, emb)), np.ones(kb)
                    pmask = np.arange(kb) < 1
                    targets = np.zeros(n, dtype=np.int64)
                losses = []
                for _ in range(int(self.steps_per_epoch)):
                    if lab_idx.size and unl_idx.size:
                        idx = np.concatenate(
                            [rng.choice(lab_idx, bs // 2), rng.choice(unl_idx, bs - bs // 2)]
                        )
                    else:
                        idx = rng.choice(n, bs)
                    key, sub = jax.random.split(key)
                    params, opt_state, loss = _train_step(
                        params, opt_state, sub, Xj[idx], jnp.asarray(y[idx]),
                        jnp.asarray(targets[idx]), jnp.asarray(P), jnp.asarray(ph),
                        jnp.asarray(pmask), hyper, use_proto=use_proto,
                    )  # fmt: skip
                    losses.append(float(loss))
                self._check_own_result("training loss", losses, epoch)
                history["n_components"].append(int(k_cur) if k_cur is not None else -1)
                history["loss"].append(float(np.mean(losses)))
            Z = np.asarray(_embed(params, Xj))
        self._check_own_result("embedding", Z, int(self.n_epochs))
        gmm, protos, _ = self._fit_prototypes(Z, y, k_cur, int(rng.integers(2**31 - 1)))
        self.head_params_ = {k: np.asarray(v) for k, v in params.items()}
        self.gmm_ = gmm
        self.prototypes_ = protos
        self.n_components_ = int(protos.shape[0])
        pred = (Z @ protos.T).argmax(1)
        self.classes_ = component_classes(enc.known, self.n_components_)
        self.labels_ = self.classes_[np.where(y >= 0, y, pred)]
        self.history_ = history
        return self

    def transform(self, X):
        """The learned (unit-norm) embedding, shape (n_samples, embedding_dim)."""
        self._check_is_fitted()
        X = self._validate_X(X, reset=False)
        with x64_scope():
            p = {k: jnp.asarray(v) for k, v in self.head_params_.items()}
            return np.asarray(_embed(p, jnp.asarray(X)))

    def predict(self, X):
        """Id (``classes_``) of the nearest prototype (cosine similarity)."""
        return self.classes_[(self.transform(X) @ self.prototypes_.T).argmax(1)]

    def score(self, X, y=None):
        """Mean log density of the embedded ``X`` under the fitted semi-supervised mixture
        (``gmm_``), so that model selection (e.g. ``GridSearchCV``) works without
        ``scoring=``. Labels are not used; compare scores only between fits with the same
        embedding dimension."""
        return float(self.gmm_.score(self.transform(X)))
