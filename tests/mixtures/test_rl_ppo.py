"""PPO: GAE against a naive reference and a short learning run on the bimodal bandit."""

from __future__ import annotations

import numpy as np

from mixtures.rl import PPO, bimodal_reward, compute_gae


def naive_gae(r, v, v_next, term, end, gamma, lam):
    """Reference: advantages as explicit discounted sums of TD errors within each episode."""
    T = len(r)
    delta = [r[t] + gamma * (1 - term[t]) * v_next[t] - v[t] for t in range(T)]
    adv = np.zeros(T)
    for t in range(T):
        total, coef = 0.0, 1.0
        for u in range(t, T):
            total += coef * delta[u]
            if end[u]:
                break
            coef *= gamma * lam
        adv[t] = total
    return adv


def test_gae_matches_naive_sum():
    rng = np.random.default_rng(0)
    T = 30
    r, v, v_next = rng.normal(size=T), rng.normal(size=T), rng.normal(size=T)
    term = (rng.uniform(size=T) < 0.1).astype(float)
    end = np.maximum(term, (rng.uniform(size=T) < 0.1).astype(float))
    adv, ret = compute_gae(r, v, v_next, term, end, 0.97, 0.9)
    np.testing.assert_allclose(adv, naive_gae(r, v, v_next, term, end, 0.97, 0.9), rtol=1e-12)
    np.testing.assert_allclose(ret, adv + v, rtol=1e-12)


def test_pmoe_ppo_learns_bimodal_bandit():
    """Uniform random actions earn E[r] = 0.1 sqrt(2 pi) ~ 0.25 (closed form, erf ~ 1);
    PMOE-PPO with K = 2 reaches a mode within 60 rollouts of 64 one-step episodes."""
    agent = PPO(
        "mixproc/Bimodal-v0",
        policy="mixture",
        n_components=2,
        total_timesteps=3840,
        n_steps=64,
        n_minibatches=1,
        n_epochs=10,
        learning_rate=3e-3,
        hidden_sizes=(32,),
        random_state=0,
        verbose=0,
    ).fit()
    late = agent.history_["episode_returns"][-256:]
    random_mean = 0.1 * np.sqrt(2 * np.pi)
    # 256 episodes: the standard error of the late mean is < 0.03; +0.15 is > 5 SE above
    # random (measured 0.46 at seed 0 and still rising).
    assert late.mean() > random_mean + 0.15, late.mean()
    obs = np.linspace(-1, 1, 200)[:, None]
    greedy = bimodal_reward(agent.predict(obs, mode="argmax")[:, 0]).mean()
    assert greedy > 0.5, greedy
    # "argmax" acting is the deterministic action of the primitive with the largest weight
    w, modes = agent.mixing_weights(obs), agent.primitive_actions(obs)
    assert w.shape == (200, 2) and modes.shape == (200, 2, 1)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    top = modes[np.arange(200), np.argmax(w, 1)]
    np.testing.assert_allclose(np.clip(agent.predict(obs, mode="argmax"), -1, 1), top, atol=1e-6)
