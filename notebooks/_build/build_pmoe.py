"""Build notebooks/pmoe.ipynb (then run notebooks/_build/execute.py on it)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# PMOE: mixture-of-experts policies on a bimodal task\n\n"
        "Ren et al. (2021), *Probabilistic Mixture-of-Experts for Efficient Deep RL*. "
        "The toy task `mixproc/Bimodal-v0` has two equally good actions at a = ±0.6 and a "
        "bad average at 0. We train plain SAC (unimodal tanh-Gaussian) and PMOE-SAC (K = 2, "
        "frequency estimator) for 1500 steps, 2 seeds each, and look at learning curves, "
        "the primitives' actions and the mixing weights. (Small budget: CPU, < 90 s.)"
    ),
    nbf.v4.new_code_cell(
        "import numpy as np\nimport matplotlib.pyplot as plt\n"
        "from mixtures.rl import SAC, bimodal_reward\n\n"
        "kw = dict(total_timesteps=1500, learning_starts=200, batch_size=64, hidden_sizes=(32, 32),\n"
        "          train_freq=50, gradient_steps=50, learning_rate=3e-3, eval_freq=250,\n"
        "          n_eval_episodes=20, verbose=0)\n"
        "agents = {}\n"
        "for seed in (1, 2):\n"
        "    agents[('SAC', seed)] = SAC('mixproc/Bimodal-v0', policy='gaussian', random_state=seed, **kw).fit()\n"
        "    agents[('PMOE K=2', seed)] = SAC('mixproc/Bimodal-v0', policy='mixture', n_components=2,\n"
        "                                     random_state=seed, **kw).fit()"
    ),
    nbf.v4.new_markdown_cell("## Learning curves (evaluation return, 'sample' mode)"),
    nbf.v4.new_code_cell(
        "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
        "for (name, seed), a in agents.items():\n"
        "    ax.plot(a.history_['eval_timesteps'], a.history_['eval_returns'].mean(1),\n"
        "            '-o' if name == 'SAC' else '-s', label=f'{name}, seed {seed}')\n"
        "ax.set_xlabel('environment steps'); ax.set_ylabel('mean reward'); ax.legend(); plt.show()"
    ),
    nbf.v4.new_markdown_cell(
        "## The policy's modes\n\nHistogram of stochastic actions, the primitives' "
        "deterministic actions tanh(mu_k) and their mixing weights at s = 0."
    ),
    nbf.v4.new_code_cell(
        "obs = np.linspace(-1, 1, 2000)[:, None]\ngrid = np.linspace(-1, 1, 400)\n"
        "fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)\n"
        "for ax, seed in zip(axes, (1, 2)):\n"
        "    ax.plot(grid, bimodal_reward(grid), 'k-', label='r(a)')\n"
        "    for name in ('SAC', 'PMOE K=2'):\n"
        "        acts = agents[(name, seed)].predict(obs, mode='stochastic', random_state=0)[:, 0]\n"
        "        ax.hist(acts, bins=80, range=(-1, 1), density=True, alpha=0.5, label=name)\n"
        "    ax.set_title(f'seed {seed}'); ax.set_xlabel('action'); ax.legend()\n"
        "plt.show()\n"
        "for seed in (1, 2):\n"
        "    a = agents[('PMOE K=2', seed)]\n"
        "    print(f'seed {seed}: primitives tanh(mu_k(0)) =', a.primitive_actions([[0.0]])[0, :, 0].round(3),\n"
        "          ' weights w(0) =', a.mixing_weights([[0.0]])[0].round(3))"
    ),
    nbf.v4.new_markdown_cell("## Mode usage over training (winner frequencies of the frequency estimator)"),
    nbf.v4.new_code_cell(
        "fig, ax = plt.subplots(figsize=(6, 3))\n"
        "for seed in (1, 2):\n"
        "    a = agents[('PMOE K=2', seed)]\n"
        "    ax.plot(a.history_['update_timesteps'], a.history_['mode_frequencies'][:, 0], label=f'seed {seed}: P(k*=1)')\n"
        "ax.set_xlabel('environment steps'); ax.set_ylim(0, 1); ax.legend(); plt.show()\n"
        "for (name, seed), a in agents.items():\n"
        "    r = bimodal_reward(a.predict(obs, mode='sample', random_state=0)[:, 0]).mean()\n"
        "    print(f'{name:9s} seed {seed}: mean reward of sample-mode actions {r:.3f}')"
    ),
    nbf.v4.new_markdown_cell(
        "**Reading.** On this budget both policies usually end on one of the two optima; "
        "the unimodal policy does not always average the modes, and PMOE's winner-take-all "
        "routing often concentrates the weight on one primitive (a 'dead' primitive, as the "
        "paper note warns). See `benchmarks/RESULTS_pmoe.md` for seeds and confidence intervals."
    ),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, "notebooks/pmoe.ipynb")
print("wrote notebooks/pmoe.ipynb")
