"""Build notebooks/pmoe.ipynb (run from the repository root, then execute it with
``python notebooks/_build/execute.py notebooks/pmoe.ipynb``)."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

from _cells import code, md, write


md(r"""
# PMOE: mixture-of-experts policies on a bimodal task

Soft actor-critic (SAC; Haarnoja et al., 2018) usually acts with a single tanh-Gaussian, which
has one mode. When several distinct actions are equally good, such a policy must commit to one
of them or, worse, put its mass between them. Probabilistic mixture-of-experts (PMOE; Ren et
al., 2021) replaces it by a mixture of $K$ tanh-Gaussian *primitives* with state-dependent
weights $w_k(s)$. Sampling the primitive is not differentiable, so PMOE trains with a *frequency*
estimator: it draws one action from each primitive, asks the critic which is best, trains that
winner with the usual SAC loss and regresses the weights towards the winner.

`mixtures.rl.SAC` implements both policies. Here we compare three variants on
`mixproc/Bimodal-v0`, a one-step task (a contextual bandit) shipped with the library: the agent
observes a context $s \sim U[-1, 1]$ that does not matter, picks $a \in [-1, 1]$ and receives
$r(a) = e^{-(a-0.6)^2/0.02} + e^{-(a+0.6)^2/0.02}$: two equally good actions at $\pm 0.6$ and
almost nothing in between ($r(0) \approx 3\cdot 10^{-8}$).

* **SAC**: the unimodal tanh-Gaussian policy;
* **PMOE K=2**: the frequency estimator as in the authors' code (the weights are regressed on
  the one-hot of the critic's best candidate, and each primitive's own entropy is regularised);
* **PMOE-ME K=2**: a maximum-entropy variant provided by the library
  (`routing='boltzmann', entropy='mixture'`): the entropy bonus uses the density of the whole
  mixture, which penalises primitives that overlap, and the weights are regressed on
  $\mathrm{softmax}((Q_k - \alpha \log \pi_k)/\alpha)$ instead of a one-hot, so primitives that
  are equally good keep equal weight.

Each variant trains for 4000 environment steps with 2 seeds (about a minute on a CPU in all).
`verbose=0` turns the progress bars off.
""")

code(r"""
import matplotlib.pyplot as plt
import numpy as np

from mixtures.rl import SAC, bimodal_reward

kw = dict(total_timesteps=4000, learning_starts=200, batch_size=64,
          hidden_sizes=(32, 32), train_freq=50, gradient_steps=50,
          learning_rate=3e-3, eval_freq=500, n_eval_episodes=20, verbose=0)
arms = {
    'SAC': dict(policy='gaussian'),
    'PMOE K=2': dict(n_components=2),
    'PMOE-ME K=2': dict(n_components=2, routing='boltzmann', entropy='mixture'),
}
seeds = (0, 1)
agents = {(name, s): SAC('mixproc/Bimodal-v0', random_state=s, **kw, **a).fit()
          for name, a in arms.items() for s in seeds}
""")

md(r"""
## Which optima does each policy cover?

Because the task is known in closed form, we can measure the trained policies exactly instead of
by rollouts. We evaluate on 200 contexts with the policy's *sample* mode (draw a primitive
$k \sim \mathrm{Cat}(w(s))$, then act with its mean $a = \tanh(\mu_k(s))$), and report

* $m_+$ and $m_-$: the probability of acting within 0.1 of $+0.6$ and of $-0.6$;
* $E[r]$: the expected reward (at most 1).

A policy that covers both optima has $m_+ \approx m_- \approx 0.5$ and $E[r] \approx 1$.
""")

code(r"""
obs = np.linspace(-1, 1, 200)[:, None]

def masses(agent):
    w, a = agent.mixing_weights(obs), agent.primitive_actions(obs)[..., 0]
    plus = (w * (np.abs(a - 0.6) < 0.1)).sum(1).mean()
    minus = (w * (np.abs(a + 0.6) < 0.1)).sum(1).mean()
    return plus, minus, (w * bimodal_reward(a)).sum(1).mean()

print(f"{'arm':12s} seed   m+     m-    E[r]")
for (name, s), ag in agents.items():
    p, m, r = masses(ag)
    print(f'{name:12s} {s:4d} {p:6.2f} {m:6.2f} {r:6.3f}')
""")

md(r"""
## Learning curves

Mean evaluation reward (20 episodes, sample mode) every 500 environment steps.
""")

code(r"""
fig, ax = plt.subplots(figsize=(6, 3.5))
styles = {'SAC': '-o', 'PMOE K=2': '-s', 'PMOE-ME K=2': '-^'}
for (name, s), a in agents.items():
    ax.plot(a.history_['eval_timesteps'], a.history_['eval_returns'].mean(1),
            styles[name], label=f'{name}, seed {s}')
ax.set_xlabel('environment steps'); ax.set_ylabel('mean reward')
ax.legend(fontsize=7); plt.show()
""")

md(r"""
## The policies' modes

Histograms of *stochastic* actions (primitive and Gaussian noise both sampled) over 2000
contexts, one panel per variant, with the reward curve in black. Below them, the deterministic
action $\tanh(\mu_k(0))$ and weight $w_k(0)$ of each primitive at the context $s = 0$.
""")

code(r"""
obs2 = np.linspace(-1, 1, 2000)[:, None]
grid = np.linspace(-1, 1, 400)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharey=True)
for ax, name in zip(axes, arms):
    ax.plot(grid, bimodal_reward(grid), 'k-', label='r(a)')
    for s in seeds:
        acts = agents[(name, s)].predict(obs2, mode='stochastic', random_state=0)[:, 0]
        ax.hist(acts, bins=80, range=(-1, 1), density=True, alpha=0.5,
                label=f'seed {s}')
    ax.set_title(name); ax.set_xlabel('action'); ax.legend(fontsize=7)
plt.show()
for (name, s), a in agents.items():
    if name != 'SAC':
        print(f'{name:12s} seed {s}: tanh(mu_k(0)) =',
              a.primitive_actions([[0.0]])[0, :, 0].round(3),
              ' w(0) =', a.mixing_weights([[0.0]])[0].round(3))
""")

md(r"""
## Mode usage over training

The weight of primitive 1, averaged over each training batch, as training proceeds. A weight that
stays near 0.5 means both primitives remain in use.
""")

code(r"""
fig, ax = plt.subplots(figsize=(6, 3))
for (name, s), a in agents.items():
    if name != 'SAC':
        ax.plot(a.history_['update_timesteps'], a.history_['mean_weights'][:, 0],
                styles[name], ms=3, label=f'{name}, seed {s}')
ax.set_xlabel('environment steps'); ax.set_ylabel('mean w_1'); ax.set_ylim(0, 1)
ax.legend(fontsize=7); plt.show()
""")

md(r"""
**Reading the results.**

* **SAC** does not average the two optima here: each seed commits to *one* of them ($m_+$ or
  $m_-$ equal to 1) and earns the full reward, but covers only half of the good actions.
* **PMOE K=2** keeps one primitive on an optimum and a second, wide primitive between the
  optima that still wins now and then with a lucky sample, and so keeps about 10 % of the weight
  ($w(0) \approx 0.1$ for that primitive). It never reaches the other optimum: where its winning
  samples land near a peak of the learned critic, the critic's gradient is close to zero, so the
  primitive is not pulled further. The wasted weight costs reward ($E[r] \approx 0.85$–$0.90$).
* **PMOE-ME K=2** places its two primitives on the two optima with weights close to 0.5 each,
  covers both ($m_+ \approx m_- \approx 0.5$) and earns nearly the full reward. The mixture
  entropy penalises overlapping primitives, which pushes them apart, and the soft routing target
  keeps two equally good primitives at equal weight instead of letting one take over.

These are two seeds at a small budget, enough to see the qualitative difference between the
variants; `benchmarks/pmoe_reproduce.py` runs all variants longer and with more seeds.

**References.** T. Haarnoja, A. Zhou, P. Abbeel, S. Levine (2018), *Soft actor-critic: off-policy
maximum entropy deep reinforcement learning with a stochastic actor*, ICML. · J. Ren, Y. Li, Z.
Ding, W. Pan, H. Dong (2021), *Probabilistic mixture-of-experts for efficient deep reinforcement
learning*, arXiv:2104.09122.
""")

write("pmoe.ipynb")
