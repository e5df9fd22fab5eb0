"""Build notebooks/scale_mixture_nngp.ipynb (run: python notebooks/_build/build_gp.py, then
``python notebooks/_build/execute.py notebooks/scale_mixture_nngp.ipynb``)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

from _cells import code, md, write


md(r"""
# Scale mixtures of neural-network Gaussian processes

An infinitely wide neural network with Gaussian weights is a Gaussian process, the NNGP. Lee et
al. (ICLR 2022) put a prior on the variance $\sigma^2$ of the last layer's weights: the
infinite-width limit is then a *scale mixture* of NNGPs,

$$
f \mid \sigma^2 \sim \mathcal{GP}(0, \sigma^2 K), \qquad \sigma^2 \sim p(\sigma^2),
$$

where $K$ is the NNGP kernel of the architecture. With an inverse-gamma prior the mixture is a
Student-t process, whose predictive variance grows with the misfit of the training targets;
other priors (Burr XII, or any positive NumPyro distribution) give other tails.
`gp.ScaleMixtureNNGPRegressor` fits these models with the scikit-learn interface.

This tutorial

1. fits an NNGP and two scale mixtures to data with heavy-tailed noise and compares their test
   log-likelihoods;
2. looks at the posterior of $\sigma^2$ and at how reliable the paper's importance sampling of
   it is;
3. runs NUTS over $\sigma^2$ and checks it with ArviZ;
4. classifies corrupted handwritten digits with `gp.ScaleMixtureNNGPClassifier`.
""")

md(r"""
## 1. Heavy-tailed noise: NNGP against scale mixtures

`gp.datasets.make_syn_t` generates the paper's *syn-t* set: 300 points of a smooth GP draw plus
Cauchy noise, so a few targets lie far from the curve. `split_80_10_10` splits it 80/10/10 as in
the paper and standardises $x$ with the training statistics.

Each regressor uses the NNGP kernel of a 2-hidden-layer ReLU network (the default architecture)
with weight and bias standard deviations `W_std=1.5`, `b_std=0.05` and observation noise
`noise=1e-2`. By default `fit` would first tune these by type-II maximum likelihood; on this
data we keep them fixed with `optimizer=None`, for a reason shown at the end of the section.
""")

code(r"""
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

from gp import BurrXII, Constant, InverseGamma, ScaleMixtureNNGPRegressor
from gp.datasets import make_syn_t, split_80_10_10

X, y = make_syn_t()
(X_train, y_train), _, (X_test, y_test) = split_80_10_10(X, y, seed=0)

priors = {'NNGP': Constant(1.0), 'Student-t': InverseGamma(2.0, 2.0), 'Burr XII': BurrXII(2.0, 2.0)}
fits = {}
for name, prior in priors.items():
    fits[name] = ScaleMixtureNNGPRegressor(prior=prior, noise=1e-2, optimizer=None).fit(X_train, y_train)
    # the model works on standardised targets: -log(y_std) gives the density in the units of y
    lpd = fits[name].log_predictive_density(X_test, y_test) - np.log(fits[name].y_std_[0])
    print(f'{name:10s} test negative log-likelihood {-lpd.mean():7.2f}')
""")

md(r"""
All three models have the same posterior mean: a prior on $\sigma^2$ only rescales the
covariance. Their uncertainty differs. The NNGP fixes $\sigma^2 = 1$, so its predictive
distribution is far too narrow for the outliers and its test likelihood is poor. The Student-t
and Burr XII mixtures learn from the training residuals that $\sigma^2$ is large and widen the
predictive distribution accordingly. The plot shows the predictive mean and two standard
deviations.
""")

code(r"""
grid = np.linspace(X_train.min(), X_train.max(), 300)[:, None]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
for ax, (name, reg) in zip(axes, fits.items()):
    mean, std = reg.predict(grid, return_std=True)
    ax.scatter(X_train[:, 0], y_train, s=4, c='k')
    ax.plot(grid[:, 0], mean, c='C0')
    ax.fill_between(grid[:, 0], mean - 2 * std, mean + 2 * std, alpha=0.25, color='C0')
    ax.set_title(name)
    ax.set_ylim(-40, 40)
    ax.set_xlabel('x (standardised)')
axes[0].set_ylabel('y')
fig.tight_layout()
""")

md(r"""
Why not tune the kernel here? Type-II maximum likelihood maximises the marginal likelihood of a
model whose observation noise is Gaussian. With Cauchy noise the best Gaussian explanation of the
outliers is a large noise variance, and the fitted noise runs to the upper end of its range: the
curve is then explained as noise too. On data without such outliers (for example scikit-learn's
diabetes data) the default `optimizer='lbfgs'` is the better choice.
""")

code(r"""
tuned = ScaleMixtureNNGPRegressor(prior=Constant(1.0), noise=1e-2).fit(X_train, y_train)
print('noise chosen by type-II maximum likelihood:', round(tuned.hyperparameters_['noise'], 2))
""")

md(r"""
## 2. The posterior of the scale

For the inverse-gamma prior the posterior of $\sigma^2$ is again inverse gamma,
IG$(\alpha + n/2,\ \beta + y^\top \hat K^{-1} y / 2)$ (Lee et al., 2022). For other priors
the regressor integrates over $\ln\sigma^2$ by Gauss–Hermite quadrature with 64 nodes and reports
the change when the nodes are doubled as `scale_posterior_.error`. Both are in
`scale_posterior_`.
""")

code(r"""
import scipy.stats as st

post_t, post_b = fits['Student-t'].scale_posterior_, fits['Burr XII'].scale_posterior_
s2 = np.linspace(40, 130, 300)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(s2, st.invgamma(post_t.alpha, scale=post_t.beta).pdf(s2), label='inverse-gamma prior')
# quadrature weights on a density scale: weight / node spacing in sigma^2
nodes = np.exp(post_b.log_s2)
order = np.argsort(nodes)
density = np.exp(post_b.log_weights[order]) / np.gradient(nodes[order])
ax.plot(nodes[order], density, 'o-', ms=3, label='Burr XII prior (quadrature)')
ax.set_xlim(s2[0], s2[-1]); ax.set_xlabel(r'$\sigma^2$'); ax.set_ylabel('posterior density')
ax.legend()
print(f'posterior mean of sigma^2: Student-t {post_t.mean:.1f}, Burr XII {post_b.mean:.1f} '
      f'(quadrature error {post_b.error:.1e})')
""")

md(r"""
The paper instead samples $\sigma^2$ by importance sampling with the prior as proposal
(`inference='importance'`). That works only when the prior puts enough mass where the
posterior is. Here the posterior sits near $\sigma^2 \approx 77$, far in the tail of
BurrXII(2, 2), and the importance weights collapse onto a single draw. The regressor checks the
Pareto $\hat k$ of the weights (reliable below 0.7; Vehtari et al., 2024) and their effective
sample size, and warns with a `gp.ImportanceSamplingWarning`. We record the warning to print it.
""")

code(r"""
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    imp = ScaleMixtureNNGPRegressor(prior=BurrXII(2.0, 2.0), noise=1e-2, optimizer=None,
                                    inference='importance', random_state=0).fit(X_train, y_train)
for w in caught:
    print(f'{w.category.__name__}: {w.message}\n')
print(f'importance sampling: E[sigma^2 | y] = {imp.scale_posterior_.mean:.1f}, '
      f'ESS = {imp.scale_posterior_.ess:.1f} of 1000 draws')
print(f'quadrature:          E[sigma^2 | y] = {post_b.mean:.1f}')
""")

md(r"""
## 3. NUTS over the scale, checked with ArviZ

`inference='nuts'` samples $\sigma^2$ with NumPyro's NUTS, two chains by default, and stores
the draws as an ArviZ `InferenceData` in `inference_data_`. Every NUTS fit is checked for R-hat,
effective sample size and divergences (`convergence_report_`, with a warning on failure). The
observations are correlated given $\sigma^2$, so the `log_likelihood` group holds each point's
leave-one-out conditional $\ln p(y_i \mid y_{-i}, \sigma^2)$, which is what `az.loo` needs.
""")

code(r"""
nuts = ScaleMixtureNNGPRegressor(prior=BurrXII(2.0, 2.0), noise=1e-2, optimizer=None,
                                 inference='nuts', n_samples=500, random_state=0, verbose=0)
nuts.fit(X_train, y_train)
print(f'NUTS E[sigma^2 | y] = {nuts.scale_posterior_.mean:.1f} (quadrature {post_b.mean:.1f})')
print('convergence check passed:', nuts.convergence_report_.ok)
az.summary(nuts.inference_data_, var_names=['s2'])
""")

md(r"""
PSIS-LOO estimates the expected log predictive density of a new observation from these
leave-one-out terms. ArviZ warns when an observation's Pareto $\hat k$ exceeds 0.7: leaving it
out changes the posterior so much that importance sampling cannot estimate its term. We record
the warning and look at which observations it concerns.
""")

code(r"""
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    loo = az.loo(nuts.inference_data_, pointwise=True)
print(f'elpd_loo = {loo.elpd_loo:.1f} (SE {loo.se:.1f}), effective parameters p_loo = {loo.p_loo:.1f}')
for w in caught:
    print(f'{w.category.__name__}: {str(w.message)[:90]}...')
bad = np.flatnonzero(loo.pareto_k.values > 0.7)
residual = y_train - fits['Burr XII'].predict(X_train)
print('observations with k-hat > 0.7:', bad, ' their residuals:', residual[bad].round(1))
print('median absolute residual of all training points:', np.median(np.abs(residual)).round(2))
""")

md(r"""
They are Cauchy outliers, with residuals about a hundred times the typical one. For them the
PSIS-LOO terms are unreliable, and an exact refit without each of them (or K-fold
cross-validation) would be needed for a trustworthy elpd.
""")

code(r"""
az.plot_trace(nuts.inference_data_, var_names=['s2'], figsize=(10, 2.5));
""")

md(r"""
## 4. Classification of corrupted digits

`gp.ScaleMixtureNNGPClassifier` with `likelihood='gaussian'` regresses the 0/1 one-hot targets
with one shared scale, as in the paper's classification experiments, and predicts the class of
the largest posterior mean. `gp.datasets.load_digits_corrupted` trains on 400 clean
scikit-learn digits and tests on the other 1397, corrupted. A heavy-tailed prior cannot change
the predicted classes (the posterior mean is the same), but it changes how much probability the
model puts on the true one-hot coordinates: `log_predictive_density` is the paper's
per-coordinate score (higher is better).
""")

code(r"""
from gp import ScaleMixtureNNGPClassifier
from gp.datasets import load_digits_corrupted

corruptions = ['identity', 'shot_noise', 'impulse_noise', 'glass_blur']
classifiers = {'NNGP': Constant(1.0), 'Student-t': InverseGamma(2.0, 2.0)}
score = {name: [] for name in classifiers}
for corruption in corruptions:
    Xa, ya, Xb, yb = load_digits_corrupted(corruption, n_train=400)
    for name, prior in classifiers.items():
        clf = ScaleMixtureNNGPClassifier(prior=prior, noise=1e-2).fit(Xa, ya)
        score[name].append(clf.log_predictive_density(Xb, yb).mean())
    print(f'{corruption:14s} accuracy {clf.score(Xb, yb):.3f}   '
          + '   '.join(f'{n} {v[-1]:6.3f}' for n, v in score.items()))

fig, ax = plt.subplots(figsize=(6, 3))
idx = np.arange(len(corruptions))
for k, (name, values) in enumerate(score.items()):
    ax.bar(idx + 0.4 * k, values, 0.4, label=name)
ax.set_xticks(idx + 0.2, corruptions)
ax.set_ylabel('per-coordinate log density')
ax.legend();
""")

md(r"""
The predicted classes, and so the accuracy, are the same for both priors. The Student-t model
scores higher on clean, shot-noise and impulse-noise digits; under glass blur, where almost a
third of the predictions are wrong, the NNGP scores higher in this run. The paper reports its
robustness results for MNIST-C and CIFAR-10-C with larger networks; `gp.datasets` simulates
the corruptions on scikit-learn's 8×8 digits so that this notebook runs offline.
""")

md(r"""
## Where next

* `likelihood='softmax'` fits the classifier by sparse variational inference (SVGP for the
  NNGP, SVTP for the inverse-gamma prior).
* `kernel='ntk'` uses the neural tangent kernel; `architecture`, `depth` and `activation` choose
  the network; `kernel_fn` accepts any neural-tangents kernel function.
* `sample_hyperparameters=True` with `inference='nuts'` samples the kernel hyperparameters
  jointly with the scale.
""")

write("scale_mixture_nngp.ipynb")
