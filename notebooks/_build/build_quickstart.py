"""Build notebooks/mixtures_quickstart.ipynb (then execute it with nbconvert)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# mixproc quickstart: Gaussian mixtures by EM and NUTS\n\n"
        "`mixtures.GaussianMixtureModel` fits a Gaussian mixture the way scikit-learn's "
        "`GaussianMixture` does (EM, same parameters and attributes), or as a Bayesian model "
        "in NumPyro (NUTS or SVI) with the component assignments marginalised out. "
        "Bayesian fits expose `inference_data_` for ArviZ."
    ),
    nbf.v4.new_code_cell(
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "import arviz as az\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.metrics import adjusted_rand_score\n"
        "from mixtures import GaussianMixtureModel, check_convergence, summarize\n\n"
        "iris = load_iris()\n"
        "X, y = iris.data[:, 2:4], iris.target  # petal length and width (cm)\n"
        "X.shape"
    ),
    nbf.v4.new_markdown_cell("## 1. Maximum likelihood by EM, K chosen by BIC"),
    nbf.v4.new_code_cell(
        "bic = {k: GaussianMixtureModel(k, n_init=3, random_state=0).fit(X).bic(X)\n"
        "       for k in range(1, 6)}\n"
        "em = GaussianMixtureModel(3, n_init=3, random_state=0).fit(X)\n"
        "print({k: round(v, 1) for k, v in bic.items()})\n"
        "print('converged:', em.converged_, 'iterations:', em.n_iter_)\n"
        "print('ARI vs species:', round(adjusted_rand_score(y, em.predict(X)), 3))"
    ),
    nbf.v4.new_markdown_cell(
        "## 2. Bayesian fit by NUTS\n\n"
        "On the petals BIC narrowly prefers three components over two, but versicolor and "
        "virginica overlap there, so a three-component posterior is weakly identified (NUTS "
        "diagnostics flag low ESS and R-hat above 1.01). We fit two components: setosa, and "
        "versicolor with virginica. Two chains start from the EM solution; the first coordinate of the means is ordered "
        "so that the chains cannot swap labels and R-hat is meaningful."
    ),
    nbf.v4.new_code_cell(
        "nuts = GaussianMixtureModel(2, inference='nuts', num_warmup=250, num_samples=300,\n"
        "                            num_chains=2, random_state=0).fit(X)\n"
        "idata = nuts.inference_data_\n"
        "summarize(idata, var_names=['weights', 'means']).round(3)"
    ),
    nbf.v4.new_code_cell(
        "report = check_convergence(idata, var_names=['weights', 'means'], warn=False)\n"
        "print('ok:', report.ok, '| max R-hat:', round(report.max_rhat, 3),\n"
        "      '| min bulk ESS:', round(report.min_ess_bulk),\n"
        "      '| divergences:', report.n_divergent)\n"
        "for line in report.failures:\n"
        "    print(' -', line)"
    ),
    nbf.v4.new_code_cell("az.plot_trace(idata, var_names=['weights']);\nplt.tight_layout()"),
    nbf.v4.new_markdown_cell("## 3. Posterior of the component means and the predictive density"),
    nbf.v4.new_code_cell(
        "xx, yy = np.meshgrid(np.linspace(0.5, 7.5, 150), np.linspace(-0.3, 3, 150))\n"
        "grid = np.c_[xx.ravel(), yy.ravel()]\n"
        "dens = np.exp(nuts.score_samples(grid)).reshape(xx.shape)\n"
        "fig, ax = plt.subplots(figsize=(6, 4.5))\n"
        "ax.contour(xx, yy, dens, levels=12, cmap='Greys')\n"
        "ax.scatter(X[:, 0], X[:, 1], c=nuts.predict(X), s=12, cmap='viridis')\n"
        "draws = nuts.posterior_samples_['means']\n"
        "for k in range(2):\n"
        "    ax.scatter(draws[:, k, 0], draws[:, k, 1], s=2, color='red', alpha=0.3)\n"
        "ax.set(xlabel='petal length (cm)', ylabel='petal width (cm)',\n"
        "       title='Posterior predictive density and draws of the means');"
    ),
    nbf.v4.new_code_cell(
        "em2 = GaussianMixtureModel(2, n_init=3, random_state=0).fit(X)\n"
        "print('mean log predictive density (NUTS, K=2):', round(nuts.score(X), 4))\n"
        "print('mean log likelihood at the MLE (EM, K=2):', round(em2.score(X), 4))"
    ),
]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/mixtures_quickstart.ipynb")
