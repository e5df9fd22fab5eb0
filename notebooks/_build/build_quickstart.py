"""Build notebooks/mixtures_quickstart.ipynb (run from the repository root, then execute it
with ``python notebooks/_build/execute.py notebooks/mixtures_quickstart.ipynb``)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

from _cells import code, md, write


md(r"""
# mixproc quickstart: Gaussian mixtures by EM and by NUTS

A Gaussian mixture models a density as a weighted sum of $K$ Gaussians,
$p(x) = \sum_{k=1}^K \pi_k\, \mathcal N(x; \mu_k, \Sigma_k)$. Every sample comes from one
component, but we do not observe which, so the mixture is also a soft clustering method.

`mixtures.GaussianMixtureModel` fits it in two ways:

* **maximum likelihood by EM** (Dempster, Laird & Rubin, 1977), with the parameters,
  attributes and convergence rule of scikit-learn's `GaussianMixture`;
* **Bayesian inference** in NumPyro, by NUTS (Hoffman & Gelman, 2014) or SVI, with the component
  assignments summed out of the likelihood. The posterior draws are exposed as an ArviZ
  `InferenceData`, so the usual diagnostics and plots apply.

We use the petal length and width of Fisher's iris flowers (150 flowers, three species),
which ship with scikit-learn.
""")

code(r"""
import arviz as az
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris
from sklearn.metrics import adjusted_rand_score

from mixtures import GaussianMixtureModel, check_convergence, summarize

iris = load_iris()
X, y = iris.data[:, 2:4], iris.target  # petal length and width (cm); y: species
X.shape
""")

md(r"""
## 1. Maximum likelihood by EM, with K chosen by BIC

EM needs the number of components $K$. A standard way to choose it is the Bayesian
information criterion, $\mathrm{BIC} = -2 \log \hat L + p \log n$ (Schwarz, 1978): the fit
(log-likelihood at the maximum) minus a penalty on the number of parameters $p$. Lower is
better. `n_init=3` restarts EM three times from different k-means initialisations and keeps the
best run, as in scikit-learn.

The species labels are not used by the fit; the adjusted Rand index (ARI; Hubert & Arabie,
1985) compares the clusters with them afterwards (1 = the same partition, 0 = chance level).
""")

code(r"""
bic = {k: GaussianMixtureModel(k, n_init=3, random_state=0).fit(X).bic(X)
       for k in range(1, 6)}
print('BIC per K:', {k: round(v, 1) for k, v in bic.items()})
em = GaussianMixtureModel(3, n_init=3, random_state=0).fit(X)
print('K = 3: converged:', em.converged_, '| EM iterations:', em.n_iter_)
print('ARI of the clusters vs the species:', round(adjusted_rand_score(y, em.predict(X)), 3))
""")

md(r"""
BIC drops sharply from one to two components and reaches its minimum at three (355.9 against
364.6 for two), so EM with three components recovers the species well (ARI 0.922).

## 2. Bayesian fit by NUTS

The margin between two and three components is small: versicolor and virginica overlap in
petal size, and a three-component *posterior* is weakly identified there (the chains wander
between ways of splitting the overlap, and the diagnostics below would report a low effective
sample size). A Bayesian fit is most instructive where the data determine the parameters, so we
fit two components: setosa, and versicolor with virginica.

The model puts a Dirichlet prior on the weights and weakly informative priors, scaled to the
data, on the means and covariances (the docstring of `mixtures.bayesian_gmm` states them). Two
practical details make the chains comparable:

* a mixture posterior has $K!$ symmetric copies (relabel the components and nothing changes).
  The first coordinate of the means is constrained to be increasing, which picks one copy
  (Stephens, 2000), so two chains cannot settle on different labellings;
* both chains start from the EM solution, so warm-up is short.

`summarize` returns ArviZ's summary table: posterior mean and standard deviation, a 94 %
highest-density interval, Monte Carlo standard errors, bulk and tail effective sample sizes and
R-hat.
""")

code(r"""
nuts = GaussianMixtureModel(2, inference='nuts', num_warmup=300, num_samples=500,
                            num_chains=2, random_state=0).fit(X)
idata = nuts.inference_data_
summarize(idata, var_names=['weights', 'means']).round(3)
""")

md(r"""
`check_convergence` applies the usual rules of thumb to the same draws: rank-normalised R-hat
below 1.01 and at least 100 effective draws per chain (Vehtari et al., 2021), and no divergent
transitions (which would mean NUTS could not follow the posterior's geometry).
""")

code(r"""
report = check_convergence(idata, var_names=['weights', 'means'], warn=False)
print('ok:', report.ok, '| max R-hat:', round(report.max_rhat, 3),
      '| min bulk ESS:', round(report.min_ess_bulk),
      '| divergences:', report.n_divergent)
for line in report.failures:  # empty when every check passes
    print(' -', line)
""")

md(r"""
The trace plot shows, for each weight, the posterior density estimated from each chain (left)
and the draws in sampling order (right). Well-mixed chains give overlapping densities and
traces that look like stationary noise around the same level, without trends or long
excursions.
""")

code(r"""
az.plot_trace(idata, var_names=['weights'])
plt.tight_layout()
""")

md(r"""
## 3. The posterior predictive density

`score_samples` of a Bayesian fit is the *posterior predictive* log-density: the mixture density
averaged over the posterior draws. The grey contours show it over the petal plane; points are
coloured by their most probable component, and the red clouds are the posterior draws of the two
means, so their spread shows how precisely the data locate each component.
""")

code(r"""
xx, yy = np.meshgrid(np.linspace(0.5, 7.5, 150), np.linspace(-0.3, 3, 150))
grid = np.c_[xx.ravel(), yy.ravel()]
dens = np.exp(nuts.score_samples(grid)).reshape(xx.shape)
fig, ax = plt.subplots(figsize=(6, 4.5))
ax.contour(xx, yy, dens, levels=12, cmap='Greys')
ax.scatter(X[:, 0], X[:, 1], c=nuts.predict(X), s=12, cmap='viridis')
draws = nuts.posterior_samples_['means']
for k in range(2):
    ax.scatter(draws[:, k, 0], draws[:, k, 1], s=2, color='red', alpha=0.3)
ax.set(xlabel='petal length (cm)', ylabel='petal width (cm)',
       title='Posterior predictive density and draws of the means');
""")

md(r"""
Finally, the two fits agree on how well a two-component mixture explains the data. `score`
returns the mean log-density per flower: at the maximum-likelihood parameters for EM, and under
the posterior predictive for NUTS. With 150 points and a well-identified model the posterior is
concentrated near the maximum, so the two numbers are close; the predictive density is slightly
lower because it averages over parameter uncertainty instead of using the single best fit.
""")

code(r"""
em2 = GaussianMixtureModel(2, n_init=3, random_state=0).fit(X)
print('mean log predictive density (NUTS, K=2):', round(nuts.score(X), 4))
print('mean log likelihood at the MLE (EM, K=2):', round(em2.score(X), 4))
""")

md(r"""
**Next steps.** `inference='svi'` fits the same model by stochastic variational inference, much
faster on large data; `verbose=1` shows progress bars for long fits. The other notebooks in this
folder build on these pieces: semi-supervised mixtures for category discovery, mixture
forecasters for trajectories, mixture-of-experts layers and policies.

**References.** A. P. Dempster, N. M. Laird, D. B. Rubin (1977), *Maximum likelihood from
incomplete data via the EM algorithm*, JRSS B. · G. Schwarz (1978), *Estimating the dimension of
a model*, Annals of Statistics. · L. Hubert, P. Arabie (1985), *Comparing partitions*, Journal of
Classification. · M. Stephens (2000), *Dealing with label switching in mixture models*, JRSS B. ·
M. D. Hoffman, A. Gelman (2014), *The No-U-Turn Sampler*, JMLR. · A. Vehtari, A. Gelman, D.
Simpson, B. Carpenter, P.-C. Bürkner (2021), *Rank-normalization, folding, and localization: an
improved R-hat*, Bayesian Analysis.
""")

write("mixtures_quickstart.ipynb")
