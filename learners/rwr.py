"""RWR: reward-weighted regression on the off-policy path (Peters & Schaal 2007; the advantage
form is AWR, Peng et al. 2019).

The policy is fitted by weighted maximum likelihood on replayed (s, a) pairs:

    θ ← argmax_θ Σ_i w_i log π_θ(a_i|s_i)          (one Adam step on the sampled batch)
    u_i = δ_i / (β σ_δ)    δ_i = r_i + γ (1 - term_i) V_φ(s'_i) - V_φ(s_i)
                                                    (``weighting="td"``, the default)
    u_i = Â_i / (β σ_Â)    Â_i = R_i - V_φ(s_i)    (``weighting="advantage"``: AWR's Monte Carlo form)
    u_i = R_i / (β σ_R)                             (``weighting="return"``: the original RWR)
    w_i = min( exp(u_i) / Z, w_max ),   Z = 1/B Σ_j exp(u_j)

R_i is the discounted reward-to-go from s_i, summed in the worker when the episode ends
(:class:`EpisodeAdder`) and stored in the replay next to the transition; after a time limit
the learner adds γ^{L-i} V_φ(s_L) with its current critic (:func:`replay_returns`). V_φ is a learned
state-value baseline, regressed on the same R_i: L_V = ½ (V_φ(s_i) - R_i)². Subtracting it
makes w depend on how much better than usual a_i did from s_i, not on how good s_i was
(early CartPole states all have large R). The default scores a_i by its one-step TD advantage
δ_i, both of whose terms come from the same V_φ: R_i - V_φ(s_i) also carries the noise of every
later action of the episode, which on Pendulum's 200-step episodes buried a_i's own effect
(seed 0, 50k env steps: -1012 with R - V, -380 with δ; benchmarks/NOTES.md, RWR).
σ (the batch standard deviation of the score)
makes β free of the reward scale, so one default fits envs with rewards of 1 or -16.
Dividing by Z keeps the mean weight at 1 whatever the batch; w_max caps any one sample.

How this relates to the policy gradient (the lecture's point, measured in
``benchmarks/lecture_methods.py``): for large β, exp(u) ≈ 1 + u, so
∇ Σ w_i log π(a_i|s_i) ≈ Σ ∇ log π(a_i|s_i) + 1/β Σ u_i ∇ log π(a_i|s_i). On fresh data from
π_θ the first sum has expectation 0 and the second is the policy gradient; on replayed data
from older policies the first sum is not 0 (it pulls π_θ toward the old behaviour) and the
second lacks the importance ratio π_θ/π_old, so the two directions part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from tandem.agents.scaled_value import ScaledValueActorCritic
from tandem.core.types import Batch, Rollout, UpdateResult
from tandem.learners.config import OffPolicyConfig
from tandem.learners.finite import checked
from tandem.learners.on_policy import ActorCriticLearner
from tandem.learners.registry import AlgoSpec, discrete_or_box
from tandem.learners.returns import episode_reward_to_go, td_target


@dataclass
class RWRConfig(
    OffPolicyConfig,
    fragment_length=8,
    batch_size=256,
    replay_capacity=50_000,
    samples_per_insert=64.0,
):
    """RWR hyperparameters. The replay is short (50k): RWR fits whatever the buffer holds, so old
    data is kept brief; 64 samples per insert at batch 256 is a gradient step per 4 env steps."""

    gamma: float = 0.99
    """Discount γ of the reward-to-go."""
    weighting: Literal["td", "advantage", "return"] = "td"
    """Score in the exponent: the TD advantage r + γ V(s') - V(s), the Monte Carlo advantage
    R - V(s) (AWR), or R itself (classic RWR); V is the learned baseline in every case."""
    beta: float = 1.0
    """Temperature β, in units of the score's batch standard deviation."""
    max_weight: float = 20.0
    """Clip w_max on each normalised weight."""
    lr: float = 1e-3
    """Adam step size of the policy (and log σ)."""
    vf_lr: float = 1e-3
    """Adam step size of the value baseline V_φ."""
    hidden: tuple[int, ...] = (64, 64)
    """MLP hidden sizes of policy and critic."""
    init_log_std: float = 0.0
    """Initial log σ of the Gaussian policy (Box actions)."""
    min_log_std: float = -1.6
    """Floor on log σ: weighted maximum likelihood alone shrinks σ until exploration stops."""
    return_stats_rate: float = 0.001
    """Rate of the moving averages μ_R, σ_R that scale the critic (one update per batch)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""
    max_hold_steps: int = 1000
    """A worker holds an unfinished episode back at most this many steps, then writes it with a
    bootstrapped return (as at a time limit), so an endless episode cannot grow its memory."""


def rwr_weights(scores: torch.Tensor, beta: float, max_weight: float, eps: float = 1e-8) -> torch.Tensor:
    """w_i = min( exp(u_i) / Z, w_max ),  u_i = s_i / (β σ_s),  Z = 1/B Σ_j exp(u_j)  ([B] -> [B]).

    σ_s is the batch standard deviation of the scores (1 for a single score); computed as a
    softmax times B, so large scores cannot overflow. Normalised first, then clipped: the mean
    weight is 1 before the clip and at most 1 after it.
    """
    scale = scores.std() if scores.numel() > 1 else torch.ones(())
    u = scores / (beta * (scale + eps))
    w = torch.softmax(u, dim=0) * scores.numel()
    return w.clamp(max=max_weight)


WEIGHTINGS = ("td", "advantage", "return")


def rwr_score(
    weighting: str,
    batch: Batch,
    returns: torch.Tensor,
    values: torch.Tensor,
    value_fn: Callable[[np.ndarray], torch.Tensor],
    gamma: float,
) -> torch.Tensor:
    """The score s_i in the exponent of w_i, [B], for ``weighting``:

    | weighting   | s_i                                        |
    |-------------|--------------------------------------------|
    | "td"        | r_i + γ (1 - term_i) V(s'_i) - V(s_i)      |
    | "advantage" | R_i - V(s_i)                               |
    | "return"    | R_i                                        |

    ``values`` is V(s_i) and ``value_fn`` maps next observations to V(s'); s' after a time limit
    is the true final observation, so the TD form bootstraps there and only ``terminated`` cuts it.
    """
    if weighting == "return":
        return returns
    if weighting == "advantage":
        return returns - values
    with torch.no_grad():
        next_v = value_fn(batch.next_obs)
    rewards = torch.as_tensor(batch.rewards, dtype=torch.float32)
    terminated = torch.as_tensor(batch.terminated, dtype=torch.float32)
    return td_target(rewards, next_v, terminated, gamma) - values


def rwr_policy_loss(logp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L(θ) = -1/B Σ_i w_i log π_θ(a_i|s_i): weighted negative log-likelihood, w held constant."""
    return -(weights.detach() * logp).mean()


class EpisodeAdder:
    """The worker-side writer: attaches each step's reward-to-go to the transition it writes.

    Steps of an unfinished episode are **held back** in the worker until the episode ends, so
    the return is summed where the episode really ended, not guessed at a fragment boundary.
    Each row gets three extras, and the learner forms R_t = ``rtg`` + ``boot_discount`` ·
    V_φ(``boot_obs``) with its *current* critic when it samples the row:

    | the segment ends with          | rtg                     | boot_discount | boot_obs     |
    |--------------------------------|-------------------------|---------------|--------------|
    | terminated                     | Σ_{k=t}^{L-1} γ^{k-t} r_k | 0           | s_L (unused) |
    | truncated (time limit)         | the same                | γ^{L-t}       | s_L, final obs |
    | ``max_hold_steps`` held, still | the same                | γ^{L-t}       | s_L, its next obs |
    |   running (rest: new segment)  |                         |               |              |

    Why the bootstrap is not baked in: a time limit is not part of the MDP, so the return
    must continue past it with V(s_L); a value frozen into the replay at write time would come
    from an early, wrong critic (at the start V ≈ 0 against returns near -1000 on Pendulum) and
    would stay wrong for as long as the row lives. Storing s_L costs one observation per row.
    """

    def __init__(self, gamma: float, max_hold_steps: int = 1000):
        self.gamma = gamma
        self.max_hold = max_hold_steps
        self._pending: list[list[tuple[int, Rollout]]] | None = None

    def __call__(self, rollout: Rollout) -> Batch | None:
        T, N = rollout.rewards.shape
        if self._pending is None:
            self._pending = [[] for _ in range(N)]
        out: list[Batch] = []
        for t in range(T):
            for i in range(N):
                self._pending[i].append((t, rollout))
                if rollout.terminated[t, i]:
                    out.append(self._flush(i, bootstrap=False))
                elif rollout.truncated[t, i] or len(self._pending[i]) >= self.max_hold:
                    out.append(self._flush(i, bootstrap=True))
        if not out:
            return None
        parts = [b.arrays() for b in out]
        return Batch.from_arrays({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})

    @property
    def held_steps(self) -> int:
        """Steps waiting in this worker for their episode to end."""
        return sum(len(p) for p in self._pending or [])

    def _flush(self, i: int, bootstrap: bool) -> Batch:
        steps, self._pending[i] = self._pending[i], []
        rows: dict[str, list[np.ndarray]] = {}
        for t, r in steps:
            for k, v in (
                ("obs", r.obs),
                ("actions", r.actions),
                ("rewards", r.rewards),
                ("next_obs", r.next_obs),
                ("terminated", r.terminated),
                ("truncated", r.truncated),
                *r.extras.items(),
            ):
                rows.setdefault(k, []).append(v[t, i])
        arrays = {k: np.stack(v) for k, v in rows.items()}
        L = len(steps)
        arrays["rtg"] = episode_reward_to_go(arrays["rewards"], self.gamma)
        disc = self.gamma ** np.arange(L, 0, -1, dtype=np.float64)  # γ^{L-t}, t = 0..L-1
        arrays["boot_discount"] = (disc if bootstrap else np.zeros(L)).astype(np.float32)
        arrays["boot_obs"] = np.repeat(arrays["next_obs"][-1:], L, axis=0)
        return Batch.from_arrays(arrays)


def replay_returns(m: ScaledValueActorCritic, batch: Batch) -> torch.Tensor:
    """R_i = rtg_i + boot_discount_i · V_φ(boot_obs_i)  [B], with the learner's current critic."""
    rtg = torch.as_tensor(batch.extras["rtg"], dtype=torch.float32)
    disc = torch.as_tensor(batch.extras["boot_discount"], dtype=torch.float32)
    with torch.no_grad():
        boot = m.value(m.obs_tensor(batch.extras["boot_obs"]))
    return rtg + disc * boot


class RWRLearner(ActorCriticLearner):
    """One critic step and one weighted-likelihood actor step per sampled replay batch."""

    OPTIMIZERS = ("pi_opt", "vf_opt")

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: RWRConfig):
        if cfg.weighting not in WEIGHTINGS:
            raise ValueError(f"rwr weighting must be one of {', '.join(WEIGHTINGS)}, not {cfg.weighting!r}")
        self.cfg = cfg
        self.model = ScaledValueActorCritic(obs_space, act_space, cfg.hidden, init_log_std=cfg.init_log_std)
        self.pi_params = [p for n, p in self.model.named_parameters() if not n.startswith("v.")]
        self.pi_opt = torch.optim.Adam(self.pi_params, lr=cfg.lr)
        self.vf_opt = torch.optim.Adam(self.model.v.parameters(), lr=cfg.vf_lr)
        self.updates = 0

    def set_progress(self, fraction: float) -> None:
        """No schedule: the temperature β and the step sizes are constant over the run."""

    def update(self, batch: Batch) -> UpdateResult:
        cfg, m = self.cfg, self.model
        if not {"rtg", "boot_discount", "boot_obs"} <= set(batch.extras):
            raise ValueError(
                "rwr needs the reward-to-go extras in the replay: write them with rwr's EpisodeAdder"
            )
        x = m.obs_tensor(batch.obs)
        a = torch.as_tensor(batch.actions)
        R = replay_returns(m, batch)
        # 1. the baseline V_φ(s) ≈ R, regressed in standardized units (agents.scaled_value)
        m.track_returns(R, cfg.return_stats_rate)
        v_norm = m.normalized_value(x)
        v = (m.ret_mean + m.ret_std * v_norm).detach()
        score = rwr_score(cfg.weighting, batch, R, v, lambda obs: m.value(m.obs_tensor(obs)), cfg.gamma)
        v_loss = 0.5 * (v_norm - (R - m.ret_mean) / m.ret_std).pow(2).mean()
        self.vf_opt.zero_grad()
        v_loss.backward()
        self.vf_opt.step()
        # 2. the weights, from the baseline before this step (the score was taken above)
        w = rwr_weights(score, cfg.beta, cfg.max_weight)
        # 3. the policy: weighted maximum likelihood
        d = m.dist(x)
        pi_loss = rwr_policy_loss(m.log_prob(d, a), w)
        self.pi_opt.zero_grad()
        pi_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.pi_params, cfg.max_grad_norm)
        self.pi_opt.step()
        if not m.discrete:
            with torch.no_grad():
                m.log_std.clamp_(min=cfg.min_log_std)
        self.updates += 1
        return checked(
            UpdateResult(
                metrics={
                    "loss/policy": pi_loss.item(),
                    "loss/value": v_loss.item(),
                    "stats/entropy": m.entropy(d).mean().item(),
                    "stats/grad_norm": float(grad_norm),
                    "stats/weight_max": w.max().item(),
                    "stats/weight_clip_frac": (w >= cfg.max_weight).float().mean().item(),
                    # Kish's effective sample size as a fraction of B: how many samples really count.
                    "stats/weight_ess_frac": (w.sum() ** 2 / (w.pow(2).sum() * len(w))).item(),
                    "stats/return_to_go_mean": R.mean().item(),
                },
                grad_steps=1,
                samples_trained=len(batch),
            ),
            batch,
            self.updates,
        )


def make_policy(
    obs_space, act_space, cfg, *, worker_index: int = 0, num_workers: int = 1
) -> ScaledValueActorCritic:
    return ScaledValueActorCritic(obs_space, act_space, cfg.hidden, init_log_std=cfg.init_log_std)


def make_adder(cfg: RWRConfig, policy: Any) -> EpisodeAdder:
    """One adder per worker (it needs no policy: the learner bootstraps with its own V_φ)."""
    return EpisodeAdder(cfg.gamma, cfg.max_hold_steps)


SPEC = AlgoSpec(
    name="rwr",
    config_cls=RWRConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=RWRLearner,
    check_spaces=discrete_or_box("rwr"),
    make_adder=make_adder,
)
