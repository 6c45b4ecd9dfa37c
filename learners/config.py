"""The config fields every replay-fed algorithm shares (qlearn, qeval, dqn, sac, td3), once.

Each algorithm's config extends :class:`OffPolicyConfig` (or :class:`PrioritizedReplayConfig`)
and names its own defaults for the shared fields in the class statement::

    @dataclass
    class DQNConfig(PrioritizedReplayConfig, batch_size=64, prioritized=True):
        ...

so a field's type and one-line doc stand here only, while ``--set batch_size=...`` and
``config.yaml`` see an ordinary dataclass field of ``DQNConfig`` with DQN's default. Why a
default has the value it has (tuning runs, probes) is in ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tandem.agents.torch_utils import DeviceConfig


@dataclass
class OffPolicyConfig:
    """What the off-policy driver reads from an algorithm's config: collection, replay, pacing."""

    fragment_length: int = 16
    """Steps per sub-env per worker call (one replay write)."""
    batch_size: int = 256
    """Transitions sampled per learner update."""
    replay_capacity: int = 100_000
    """Replay size in transitions; beyond it the oldest are overwritten."""
    min_size: int = 1_000
    """Replay size before the first update."""
    samples_per_insert: float = 64.0
    """Target replay ratio: transitions sampled per transition inserted (equal to
    ``batch_size``: one update per env step)."""
    weights_publish_interval: int = 10
    """Learner updates between weight broadcasts to the workers."""

    def __init_subclass__(cls, **defaults: Any) -> None:
        """``class C(OffPolicyConfig, batch_size=64)``: C's default for an inherited field.

        Written into C's own annotations before ``@dataclass`` processes C, so the dataclass
        machinery sees an ordinary redeclared field (same type, same place in the field order).
        """
        super().__init_subclass__()
        if not defaults:
            return
        inherited = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(defaults) - set(inherited))
        if unknown:
            raise TypeError(f"{cls.__name__}: {unknown} are not fields of its base config")
        own = dict(cls.__dict__.get("__annotations__", {}))
        for name, value in defaults.items():
            if name in own:
                raise TypeError(f"{cls.__name__}: {name!r} is both declared and given as a class keyword")
            own[name] = inherited[name].type
            setattr(cls, name, value)
        cls.__annotations__ = own


@dataclass
class PrioritizedReplayConfig(OffPolicyConfig, DeviceConfig):
    """What the neural replay learners (DQN, SAC, TD3) share: replay sampling, the count-based
    exploration bonus, and their ``device``."""

    prioritized: bool = False
    """Prioritized replay (Schaul et al. 2016): sample by |TD error|^α, weight losses by (N p)^-β."""
    priority_alpha: float = 0.6
    """Priority exponent α (0: uniform)."""
    priority_beta: float = 0.4
    """Importance-sampling exponent β."""
    exploration_bonus: str = "none"
    """'count': train on r + bonus_beta / √N(φ(s')), SimHash counts (learners.exploration); 'none'."""
    bonus_beta: float = 0.01
    """β of the count bonus, in reward units."""
    simhash_bits: int = 32
    """Bits k of the SimHash code φ(s) the bonus counts."""


@dataclass
class ActorCriticReplayConfig(
    PrioritizedReplayConfig,
    fragment_length=8,
    replay_capacity=300_000,
    min_size=5_000,
    samples_per_insert=256.0,
    weights_publish_interval=20,
):
    """What SAC and TD3 share: twin critics with Polyak targets, a uniform-random warm-up, and the
    papers' MuJoCo replay settings (one critic step per env step at batch 256 after 5k steps)."""

    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    critic_lr: float = 1e-3
    """Adam step size of the twin critics."""
    hidden: tuple[int, ...] = (256, 256)
    """MLP hidden sizes of actor and critics."""
    random_warmup: bool = True
    """Workers act uniformly at random until the first trained weights arrive."""
