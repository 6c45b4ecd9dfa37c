"""Return estimators as small pure numpy functions: the Monte-Carlo return R(τ) and the
reward-to-go R̂_t of REINFORCE, GAE(γ, λ) (Schulman et al. 2016) for actor-critic and PPO, the
one-step TD target and the n-step returns of DQN.

All inputs are time-major ``[T, N]`` arrays from one fragment (N parallel envs).
``next_values[t]`` is the critic's V(s_{t+1}) for the *true* next state, which at an
episode end is the final observation, not the reset one. Bootstrapping rules
(Pardo et al. 2018, "Time Limits in Reinforcement Learning"):

| step ends with   | bootstrap from    | why                                              |
|------------------|-------------------|--------------------------------------------------|
| terminated       | 0                 | the MDP really ended: no future reward           |
| truncated        | V(s_{t+1})        | a time limit is not part of the MDP              |
| fragment end     | V(s_{t+1})        | the episode goes on in the next fragment          |
| otherwise        | the next step     | continue the recursion                           |
"""

from __future__ import annotations

import numpy as np


def reward_to_go(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_values: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """Reward-to-go, the causality form of the policy gradient's return.

        R̂_t = Σ_{t'=t}^{T_end} γ^{t'-t} r_{t'}  (+ γ^{T_end+1-t} V(s_{T_end+1}) when cut off)

    computed backwards as R̂_t = r_t + γ · B_t with
    B_t = 0 if terminated, V(s_{t+1}) if truncated or last step of the fragment, R̂_{t+1} otherwise.
    Pass ``next_values = 0`` for pure Monte-Carlo REINFORCE with no critic.
    """
    T = rewards.shape[0]
    out = np.zeros_like(rewards, dtype=np.float64)
    future = next_values[T - 1].astype(np.float64)
    for t in reversed(range(T)):
        if t < T - 1:
            future = np.where(truncated[t], next_values[t], out[t + 1])
        future = np.where(terminated[t], 0.0, future)
        out[t] = rewards[t] + gamma * future
    return out.astype(np.float32)


def full_return(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_values: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """The full-trajectory form: every step of an episode segment gets R(τ) = Σ_t γ^t r_t.

    This is the original REINFORCE weighting (∇ log π(a_t|s_t) · R(τ)); it ignores causality,
    so actions are also credited with rewards that came before them. Unbiased but with
    higher variance than :func:`reward_to_go`; kept to show that difference. A segment is an
    episode's part inside this fragment, so R(τ) is the reward-to-go from its first step.
    """
    rtg = reward_to_go(rewards, terminated, truncated, next_values, gamma)
    out = np.empty_like(rtg)
    T = rewards.shape[0]
    seg_start_value = rtg[0].copy()
    for t in range(T):
        if t > 0:
            boundary = terminated[t - 1] | truncated[t - 1]
            seg_start_value = np.where(boundary, rtg[t], seg_start_value)
        out[t] = seg_start_value
    return out


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation, GAE(γ, λ) (Schulman et al. 2016).

        δ_t = r_t + γ (1 - terminated_t) V(s_{t+1}) - V(s_t)
        Â_t = δ_t + γ λ (1 - done_t) Â_{t+1},   done_t = terminated_t or truncated_t

    Returns (advantages, value targets Â_t + V(s_t)), both ``[T, N]``. The recursion stops at
    every episode end; a truncated step still bootstraps through δ_t.
    """
    T = rewards.shape[0]
    not_term = 1.0 - terminated.astype(np.float64)
    not_done = 1.0 - (terminated | truncated).astype(np.float64)
    deltas = rewards + gamma * not_term * next_values - values
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(T)):
        last = deltas[t] + gamma * lam * not_done[t] * last
        adv[t] = last
    return adv.astype(np.float32), (adv + values).astype(np.float32)


def td_target(
    rewards: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """One-step TD target: y = r + γ (1 - terminated) · V(s').

    V(s') is max_a' Q(s', a') for Q-learning, Q_target(s', argmax_a' Q(s', a')) for Double DQN,
    or min_i Q_i(s', a') - α log π(a'|s') for SAC. ``truncated`` is deliberately absent: a time
    limit still bootstraps (Pardo et al. 2018). Works on numpy arrays and torch tensors alike.
    """
    return rewards + gamma * (1.0 - terminated) * next_values


def n_step_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold a [T, N] fragment into n-step transitions.

        G_t^(n) = Σ_{k=0}^{m-1} γ^k r_{t+k},  m = min(n, steps to episode end or fragment end)

    Returns (G, discount γ^m for the bootstrap, terminated-within-window, index t+m-1 of the
    step whose next_obs is the bootstrap state), all ``[T, N]``.
    """
    T = rewards.shape[0]
    G = np.zeros_like(rewards, dtype=np.float64)
    disc = np.ones_like(rewards, dtype=np.float64)
    term = np.zeros_like(terminated, dtype=bool)
    last = np.tile(np.arange(T)[:, None], (1, rewards.shape[1]))
    for t in range(T):
        alive = np.ones(rewards.shape[1:], dtype=bool)
        for k in range(n):
            if t + k >= T:
                break
            G[t] += np.where(alive, disc[t] * rewards[t + k], 0.0)
            disc[t] = np.where(alive, disc[t] * gamma, disc[t])
            last[t] = np.where(alive, t + k, last[t])
            term[t] |= alive & terminated[t + k]
            alive &= ~(terminated[t + k] | truncated[t + k])
    return G.astype(np.float32), disc.astype(np.float32), term, last


def n_step_targets(
    rewards: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    n: int,
) -> np.ndarray:
    """Bootstrapped n-step value targets, ``[T, N]``:

        G_t^(n) = Σ_{k=0}^{m-1} γ^k r_{t+k} + γ^m (1 - terminated_{t+m-1}) V(s_{t+m})

    with m = min(n, steps to the episode end, steps to the fragment end). A terminated step
    ends the sum with no bootstrap; a truncated step ends it with V of the true final
    observation (``next_values`` at that step); the fragment end bootstraps from V(next_obs[-1]).
    n ≥ T gives A3C's "forward view up to the fragment end".
    """
    G, disc, term, last = n_step_returns(rewards, terminated, truncated, gamma, n)
    boot = np.take_along_axis(next_values, last, axis=0)
    return (G + disc * np.where(term, 0.0, boot)).astype(np.float32)


def episode_reward_to_go(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """Discounted reward-to-go of one finished episode (or held-back segment), ``[L]``:

        R_t = Σ_{k=t}^{L-1} γ^{k-t} r_k + γ^{L-t} · bootstrap

    ``bootstrap`` is 0 after a terminated step and V(s_L) after a truncated one.
    """
    out = np.empty(len(rewards), dtype=np.float64)
    future = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        future = float(rewards[t]) + gamma * future
        out[t] = future
    return out.astype(np.float32)
