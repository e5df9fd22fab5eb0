"""Build notebooks/kinematic_forecasting.ipynb (run from the repository root); execute it with
``python notebooks/_build/execute.py notebooks/kinematic_forecasting.ipynb``."""
# ruff: noqa: E501  (notebook cell sources are kept as written)

from _cells import code, md, write


md(r"""
# Probabilistic motion forecasting with stochastic kinematic priors

A motion forecaster predicts where a vehicle will be over the next seconds from its recent
track. The future is *multimodal* (the car may keep its lane, turn or brake) and uncertain
within each mode, so good forecasters output a mixture of trajectories with uncertainty.
Zheng et al. (2024) propose to let the network predict, for each mode, Gaussian *controls*
(velocity, acceleration, speed and heading, or acceleration and steering of the kinematic
bicycle model) and to integrate them into per-step *position* Gaussians. The kinematic model
then guarantees physically plausible paths and a principled growth of uncertainty over time.

This notebook covers the two parts of `gmm`:

1. `gmm.kinematics.propagate`: control Gaussians to position Gaussians, checked against Monte
   Carlo;
2. `gmm.KinematicGMMForecaster`: this prior under a small neural network that outputs $K$ modes,
   fitted on synthetic traffic; Gaussian modes and their calibration;
3. sampled trajectories and best-of-20 metrics at a coarser rate, on a test scene whose mix of
   manoeuvres differs from training;
4. a small-data comparison with a forecaster that predicts positions directly;
5. a GRU history encoder with attention over the neighbours, for pedestrians in a crowd.

All data are generated (by `gmm.datasets.make_bicycle_traffic`, and a toy crowd in section 5),
so the notebook needs no download.
""")

code(r"""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

from gmm import KinematicGMMForecaster, constant_velocity_forecast
from gmm.datasets import INTENTS, make_bicycle_traffic
from gmm.kinematics import propagate, rollout
from gmm.metrics import calibration_coverage, min_ade, min_fde, miss_rate, mixture_coverage, nll
from mixtures.base import x64_scope


def ellipse(ax, mean, cov, r=2.0, **kw):
    # Draw the r-sigma ellipse of a 2x2 covariance.
    w, V = np.linalg.eigh(cov)
    ang = np.degrees(np.arctan2(V[1, 1], V[0, 1]))
    w = np.sqrt(np.clip(w, 0, None))
    ax.add_patch(Ellipse(mean, 2 * r * w[1], 2 * r * w[0], angle=ang, fill=False, **kw))
""")

md(r"""
## 1. Propagated uncertainty against Monte Carlo

If the controls are independent Gaussians over time, the position after $t$ steps is a sum of
their contributions, so *variances* add. For the linear formulations (velocity, acceleration)
the position Gaussians are exact. For the formulations with a heading the model is nonlinear
(positions involve $\cos\theta$ and $\sin\theta$), and `propagate` offers three methods:

* `method='exact'` (the default): first-order propagation of the full state covariance, as in an
  extended Kalman filter;
* `method='moment'`: exact matching of the first two moments of $s(\cos\theta, \sin\theta)$, which
  also captures that a noisy heading shortens the mean displacement by $e^{-\sigma_\theta^2/2}$;
* `method='paper'`: the recursions as printed in the paper, which add standard deviations
  instead of variances (what one would get if the controls were perfectly correlated over
  time). They are kept for comparison.

We take two control sequences with moderate-to-large noise: speed-heading ($\mu_s = 10$ m/s,
$\sigma_s = 1$ m/s, heading ramping to 0.8 rad with $\sigma_\theta = 0.3$ rad) and a turning
bicycle in curvature form ($a = 0.5 \pm 0.5$ m/s², curvature $\kappa = 0.05 \pm 0.03$ 1/m), 30
steps of 0.1 s. We sample 20 000 control sequences, roll them out with the same Euler model (grey
clouds at 1, 2 and 3 s) and draw each method's 2σ ellipses on top.
""")

code(r"""
dt, T = 0.1, 30
t = np.linspace(0, 1, T)
cases = {
    'speed_heading': (np.column_stack([10 + 0 * t, 0.8 * t]), [[1.0, 0.0], [0.0, 0.09]],
                      np.array([0.0, 0.0, 0.0, 10.0])),
    'accel_steering': (np.column_stack([0.5 + 0 * t, 0.05 + 0 * t]),
                       [[0.25, 0.0], [0.0, 0.03**2]], np.array([0.0, 0.0, 0.0, 8.0])),
}
rng = np.random.default_rng(0)
colors = {'exact': 'C0', 'moment': 'C2', 'paper': 'C3'}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
rows = []
with x64_scope():
    for ax, (f, (m, c, z0)) in zip(axes, cases.items()):
        C = np.tile(np.asarray(c), (T, 1, 1))
        u = m + np.einsum('tij,ntj->nti', np.linalg.cholesky(C),
                          rng.normal(size=(20_000, T, 2)))
        cloud = np.asarray(rollout(u, z0, dt=dt, formulation=f))  # (n, T, 2)
        mc_mean, mc_sd = cloud.mean(0), cloud.std(0)
        for k in (9, 19, 29):
            ax.plot(*cloud[:1500, k].T, '.', ms=1, color='0.6', alpha=0.5)
        for method in ('exact', 'moment', 'paper'):
            r = propagate(m, C, z0, dt=dt, formulation=f, method=method)
            mean, cov = np.asarray(r.position_mean), np.asarray(r.position_cov)
            for j, k in enumerate((9, 19, 29)):
                ellipse(ax, mean[k], cov[k], color=colors[method],
                        label=method if j == 0 else None)
            sd = np.sqrt(np.diagonal(cov[-1]))
            rows.append((f, method, *(sd / mc_sd[-1] - 1),
                         np.linalg.norm(mean[-1] - mc_mean[-1])))
        ax.plot(*mc_mean.T, 'k-', lw=1, label='MC mean')
        ax.set(title=f, xlabel='x (m)', ylabel='y (m)', aspect='equal')
        ax.legend(loc='upper left')
fig.tight_layout()
print('last step (3 s): relative error of the std vs Monte Carlo, mean error (m)')
print(f"{'formulation':15s} {'method':7s} {'std x':>7s} {'std y':>7s} {'mean':>6s}")
for f, method, ex, ey, me in rows:
    print(f'{f:15s} {method:7s} {ex:+7.3f} {ey:+7.3f} {me:6.3f}')
""")

md(r"""
**How to read it.** The table compares the last step (3 s) with Monte Carlo: the relative error
of the standard deviation along x and y (0 is perfect) and the distance between the means. The
exact and moment-matched ellipses sit on the clouds, with standard deviations within 5 % of Monte
Carlo. Adding standard deviations (`paper`, red) overstates them by a factor of 5 to 7 on most
axes (relative errors of +4.0 to +5.8); on the x axis of the speed-heading case it is close only
because signed terms cancel in the printed recursion. With $\sigma_\theta = 0.3$ rad, first-order
propagation places the speed-heading mean 1.28 m too far along the heading (it misses the
$e^{-\sigma_\theta^2/2}$ shrinkage); moment matching reduces the error to 5 mm.

## 2. Predicted modes on synthetic traffic

`make_bicycle_traffic` simulates vehicles with the kinematic bicycle model (integrated finely
and sampled at 10 Hz), each following one of seven intents: keep lane, left or right turn, left or
right lane change, brake, accelerate. The intent starts at the current time, so it is invisible
in the history and the future is genuinely multimodal. The controls carry Ornstein–Uhlenbeck
noise, and the trajectories are expressed in the agent's frame (current position at the origin,
heading along +x).

We fit a 6-mode forecaster with the velocity formulation on 400 agents (0.8 s of history, 2 s
of future) and evaluate it on 300 new agents with the usual metrics:

* **minADE6 / minFDE6**: average / final displacement error of the best of the 6 modes (m);
* **miss rate @ 2 m**: fraction of agents whose best mode ends more than 2 m from the truth;
* **NLL**: negative log-likelihood of the true positions under the predicted mixture, per step;
* **coverage**: how often the truth falls inside the best mode's 1σ and 2σ ellipses, against the
  probability a calibrated 2-D Gaussian gives (0.393 and 0.865).

The constant-velocity forecast is the simplest baseline.
""")

code(r"""
H, TF = 8, 20
train = make_bicycle_traffic(400, history=H, horizon=TF, random_state=0)
test = make_bicycle_traffic(300, history=H, horizon=TF, random_state=1)
kw = dict(n_modes=6, hidden_sizes=(64,), epochs=30, batch_size=50, random_state=0)
model = KinematicGMMForecaster(formulation='velocity', **kw).fit(train.history, train.future)
probs, means, covs = model.predict_gaussians(test.history)
cv = constant_velocity_forecast(test.history, TF)
print(f'minADE6 {min_ade(test.future, means):.3f} m  (constant velocity {min_ade(test.future, cv):.3f})')
print(f'minFDE6 {min_fde(test.future, means):.3f} m  (constant velocity {min_fde(test.future, cv):.3f})')
print(f'miss rate@2m {miss_rate(test.future, means):.3f}, '
      f'NLL {nll(test.future, probs, means, covs):.3f} nats/step')
cov_r = calibration_coverage(test.future, means, covs)
print('coverage of the best mode 1/2-sigma ellipses:', cov_r.coverage.round(3),
      'expected', cov_r.expected.round(3))
fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
for ax, i in zip(axes, np.flatnonzero(np.isin(test.labels, [1, 2, 3, 5]))[:4]):
    ax.plot(*test.history[i].T, 'k.-', label='history')
    ax.plot(*test.future[i].T, 'g-', lw=2, label='truth')
    for k in np.argsort(-probs[i])[:4]:
        ax.plot(*means[i, k].T, '-', alpha=0.3 + 0.7 * probs[i, k] / probs[i].max(),
                label=f'p={probs[i, k]:.2f}')
        ellipse(ax, means[i, k, -1], covs[i, k, -1], r=1.0, color='0.4', lw=0.7)
    ax.set(aspect='equal', title=f'agent {i}: {INTENTS[test.labels[i]]}')
    ax.legend(fontsize=7, loc='best')
fig.tight_layout()
""")

md(r"""
**How to read it.** The forecaster's best mode is about half as far from the truth as constant
velocity, on average (minADE6 0.710 m against 1.310 m) and at the end of the horizon (minFDE6
1.892 m against 3.811 m). The coverages are close to the nominal values (0.470 and 0.868
against 0.393 and 0.865): the propagated uncertainty is roughly calibrated, slightly too wide
at 1σ. The panels show four test agents with a turn, a lane change or braking: the black dots
are the observed history, the green line the true future, the coloured lines the four most
probable modes (more opaque = more probable) and the grey ellipses their 1σ uncertainty at the
last step.

## 3. Sampled trajectories at 2.5 Hz, and a new scene

Pedestrian benchmarks such as ETH/UCY observe 8 positions at 2.5 Hz (3.2 s) and predict the next
12 (4.8 s), and score *best-of-20*: draw 20 trajectories per agent and report the ADE and FDE of
the closest. We reproduce this protocol with the traffic generator, sampled every 0.4 s with 5 cm
of observation noise on the history. The forecaster is trained with `dt=0.4` on 1500 agents and
tested on two scenes: one with the training mix of intents, and a "junction" where 60 % of the
vehicles turn (against 2 in 7 in training), like the leave-one-scene-out protocol that tests on
a location never seen in training.

`sample` draws a mode from the mode probabilities, samples its velocity controls and integrates
them, so each sample is a smooth, temporally coherent path rather than independent noise at
every step.
""")

code(r"""
gen = dict(history=8, horizon=12, dt=0.4, obs_noise=0.05)
junction_mix = [0.1, 0.3, 0.3, 0.05, 0.05, 0.15, 0.05]   # probabilities of INTENTS
tr = make_bicycle_traffic(1500, **gen, random_state=2)
scenes = {'training mix': make_bicycle_traffic(500, **gen, random_state=3),
          'junction': make_bicycle_traffic(500, **gen, intent_probs=junction_mix, random_state=3)}
slow = KinematicGMMForecaster(formulation='velocity', dt=0.4, min_std=0.05,
                              **{**kw, 'epochs': 20}).fit(tr.history, tr.future)
print(f"{'test scene':14s} {'best-of-20 ADE/FDE (m)':>24s} {'constant velocity ADE/FDE (m)':>31s}")
for name, te in scenes.items():
    s = slow.sample(te.history, n_samples=20, random_state=0)
    cvp = constant_velocity_forecast(te.history, 12)
    print(f'{name:14s} {min_ade(te.future, s):15.2f} / {min_fde(te.future, s):5.2f} '
          f'{min_ade(te.future, cvp):22.2f} / {min_fde(te.future, cvp):5.2f}')
te = scenes['junction']
s = slow.sample(te.history, n_samples=20, random_state=0)
pm, pp = slow.predict(te.history)
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, i in zip(axes, np.flatnonzero(np.isin(te.labels, [1, 2, 5]))[:3]):
    ax.plot(*te.history[i].T, 'k.-', label='observed')
    ax.plot(*te.future[i].T, 'g.-', lw=2, label='truth')
    for j in range(20):
        ax.plot(*s[i, j].T, '-', color='C1', alpha=0.25, lw=0.8, label='samples' if j == 0 else None)
    for k in range(pm.shape[1]):
        ax.plot(*pm[i, k].T, '-', color='C0', alpha=0.2 + 0.8 * pp[i, k] / pp[i].max(),
                label='modes' if k == 0 else None)
    ax.set(aspect='equal', title=f'junction agent {i}: {INTENTS[te.labels[i]]}', xlabel='x (m)')
axes[0].legend(loc='best', fontsize=8)
fig.tight_layout()
""")

md(r"""
**How to read it.** Over 4.8 s a vehicle travels several tens of metres, so errors are larger than in
section 2, but the best of 20 samples stays far closer to the truth than constant velocity in
both scenes. On the junction, where turns are more frequent than in training, all errors grow:
turns are the manoeuvres that deviate most from a straight line, and the forecaster still
assigns them the probabilities it learned from the training mix. This gap between the training
distribution and a new scene is what leave-one-scene-out evaluation measures on real data. In the
panels, the orange samples spread around the blue modes and follow smooth, drivable paths.

## 4. Small-data comparison with a position-space GMM

The main claim of Zheng et al. (2024) is that the kinematic prior helps most when training data
are scarce. We compare the velocity formulation with `formulation='position'`, a mixture that
predicts position Gaussians directly (no kinematics, in the style of MultiPath; Chai et al.,
2019), both with the same network, trained on 20 and on 400 agents (one seed; the model from
section 2 is reused for velocity with 400 agents). All runs use the same batch size, so they share
one compiled training step.
""")

code(r"""
res = {('velocity', 400): model}
for f in ('velocity', 'position'):
    for n in (20, 400):
        if (f, n) not in res:
            res[f, n] = KinematicGMMForecaster(formulation=f, **kw).fit(
                train.history[:n], train.future[:n])
print(f"{'variant':10s} {'n':>4s} {'minADE6':>8s} {'minFDE6':>8s} {'MR@2m':>6s} {'NLL':>6s}")
for (f, n), m in res.items():
    p, mu, cv_ = m.predict_gaussians(test.history)
    print(f'{f:10s} {n:4d} {min_ade(test.future, mu):8.3f} {min_fde(test.future, mu):8.3f}'
          f' {miss_rate(test.future, mu):6.3f} {nll(test.future, p, mu, cv_):6.2f}')
""")

md(r"""
**How to read it.** With 20 training agents the kinematic forecaster is far ahead: its modes
start at the current speed and integrate smoothly, whereas the position GMM has to learn the whole
shape of a trajectory from twenty examples (minADE6 0.799 m against 2.376 m). With 400 agents the
two are close (0.710 m against 0.734 m), as the paper reports. Two caveats: 30 epochs on 20
agents are only 30 Adam steps, which under-trains the position GMM most; and at 20 agents the
kinematic model's NLL (8.94) is much worse than at 400 (1.58), because with so little data it
becomes over-confident. `benchmarks/kinematic_reproduce.py` runs the comparison with several
seeds, longer training, more data sizes and a Deep-Kinematic-Models-style baseline (Cui et al.,
2020).

## 5. Neighbours: a sequence encoder with attention over the crowd

A pedestrian's future depends on the people around them. With `encoder='gru'` a GRU reads the
history step by step, and with `social='attention'` the observed positions of up to M
neighbours, in the agent's frame, enter through masked attention from the agent's code: the
slots' order does not matter and empty slots (mask `False`) are ignored. `fit`, `predict`,
`sample` and `score` then take `neighbours` (N, M, H, 2) and `neighbour_mask` (N, M);
`gmm.datasets.load_eth_ucy(..., max_neighbours=M)` builds them from the ETH/UCY files using
observed frames only.

A toy crowd makes the point: pedestrians walk along +x at 1 m/s, and someone stands 2 m ahead,
slightly left or right; the walker swerves to the other side. From its own history a forecaster
sees a 50/50 fork; with the neighbour it can tell which branch. A far bystander and an empty
slot are there too. Both models are fitted with 10 % of the windows held out for early stopping
(`validation_fraction=0.1`); `mixture_coverage` checks the calibration of the whole predictive
mixture (no mode is picked with the truth): the share of true positions inside its
highest-density regions of mass 0.393 and 0.865 (the 1σ and 2σ masses of a 2-D Gaussian).
""")

code(r"""
def crowd(n, seed, H=8, T=12, M=3):
    rng = np.random.default_rng(seed)
    side = rng.choice([-1.0, 1.0], n)                 # the standing person's side
    t_h, t_f = np.arange(-H + 1, 1) * 0.4, np.arange(1, T + 1) * 0.4
    hist = np.stack([np.c_[t_h, np.zeros(H)]] * n) + 0.02 * rng.standard_normal((n, H, 2))
    fut = np.stack([np.c_[t_f, -s * 0.2 * t_f ** 2] for s in side])
    fut = fut + 0.02 * rng.standard_normal((n, T, 2))
    nb = np.zeros((n, M, H, 2))
    nb[:, 0] = np.c_[np.full(n, 2.0), 0.8 * side][:, None]               # the one in the way
    nb[:, 1] = np.array([-6.0, 5.0]) + rng.standard_normal((n, 1, 2))    # a far bystander
    mask = np.array([True, True, False])[None].repeat(n, 0)              # slot 3 is empty
    return hist, fut, nb, mask

h_tr, f_tr, n_tr, m_tr = crowd(600, 0)
h_te, f_te, n_te, m_te = crowd(300, 1)
common = dict(n_modes=2, formulation='acceleration', dt=0.4, encoder='gru', embed_dim=16,
              hidden_sizes=(32,), epochs=40, batch_size=50, learning_rate=1e-2, min_std=0.02,
              validation_fraction=0.1, random_state=0)
alone = KinematicGMMForecaster(**common).fit(h_tr, f_tr)
social = KinematicGMMForecaster(social='attention', **common).fit(
    h_tr, f_tr, neighbours=n_tr, neighbour_mask=m_tr)
print(f"{'model':20s} {'top-mode FDE':>12s} {'minADE2':>8s} {'NLL':>6s} {'coverage 1σ/2σ':>15s} {'best epoch':>10s}")
for name, m, nbk in (('own history', alone, {}),
                     ('with neighbours', social, dict(neighbours=n_te, neighbour_mask=m_te))):
    p, mu, cv_ = m.predict_gaussians(h_te, **nbk)
    top = mu[np.arange(len(p)), p.argmax(1)]
    cov = mixture_coverage(f_te, p, mu, cv_, random_state=0)
    print(f'{name:20s} {np.linalg.norm(top[:, -1] - f_te[:, -1], axis=-1).mean():12.2f} '
          f'{min_ade(f_te, mu):8.3f} {nll(f_te, p, mu, cv_):6.2f} '
          f'{cov.coverage[0]:8.2f} / {cov.coverage[1]:.2f} {m.best_epoch_:10d}')
fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, sharey=True)
models = (('own history', alone, {}),
          ('with neighbours', social, dict(neighbours=n_te[:2], neighbour_mask=m_te[:2])))
for row, (name, m, nbk) in zip(axes, models):
    modes, probs = m.predict(h_te[:2], **nbk)
    for i, ax in enumerate(row):
        ax.plot(*h_te[i].T, 'k.-', label='observed')
        ax.plot(*f_te[i].T, 'g.-', lw=2, label='truth')
        ax.plot(*n_te[i, 0, -1], 'ro', ms=10, mfc='none', label='person ahead')
        for k in range(2):
            ax.plot(*modes[i, k].T, '--', color='C0', alpha=0.1 + 0.9 * probs[i, k],
                    label=f'mode, p = {probs[i, k]:.2f}')
        ax.set(title=f'{name}, agent {i}', aspect='equal')
        ax.legend(fontsize=7, loc='lower left')
fig.tight_layout()
""")

md(r"""
**How to read it.** Both models learn the two branches (minADE over their 2 modes is about
8 cm), but only the one with neighbours knows which branch comes: the final position of its most
probable mode is 0.13 m from the truth on average, against 4.52 m from the agent's own history,
which can only guess a side (the two branches end 9.2 m apart, so a coin flip is off by 4.6 m on average). Its NLL is lower too (−2.66
against −1.99 nats per step). Both are somewhat over-confident: the highest-density regions hold
0.25 and 0.74 of the true positions with neighbours (0.36 and 0.78 without), against the nominal
0.393 and 0.865, because their variances are fitted to training data that is almost noise-free.
In the panels, the model without neighbours gives both branches similar weight, the one with
neighbours puts its weight on the side away from the person ahead (circle).

On the real ETH/UCY benchmark (leave one scene out, 8 observed and 12 predicted steps),
`benchmarks/kinematic_reproduce.py --sections 3` trains this architecture on the other scenes
and reports ADE/FDE, the mixture NLL and this coverage per scene; BENCHMARKS.md has the table.

**References.** L. Zheng, S. Son, J. Liang, X. Wang, B. Clipp, M. C. Lin (2024), *Deep stochastic
kinematic models for probabilistic motion forecasting in traffic*, IROS, arXiv:2406.01431. ·
Y. Chai, B. Sapp, M. Bansal, D. Anguelov (2019), *MultiPath: multiple probabilistic anchor
trajectory hypotheses for behavior prediction*, CoRL. · H. Cui et al. (2020), *Deep kinematic
models for kinematically feasible vehicle trajectory predictions*, ICRA. · S. Pellegrini, A.
Ess, K. Schindler, L. van Gool (2009), *You'll never walk alone* (ETH), ICCV; A. Lerner, Y.
Chrysanthou, D. Lischinski (2007), *Crowds by example* (UCY), Computer Graphics Forum. ·
K. Cho et al. (2014), *Learning phrase representations using RNN encoder-decoder for statistical
machine translation* (GRU), EMNLP. · A. Vaswani et al. (2017), *Attention is all you need*,
NeurIPS.
""")

write("kinematic_forecasting.ipynb")
