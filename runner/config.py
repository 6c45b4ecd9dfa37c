"""Run configuration: one typed dataclass for the run, one per algorithm, resolved in order
defaults -> algorithm preset -> ``--config FILE.yaml`` -> ``--set key=value``."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tandem.core.errors import TandemError
from tandem.core.metrics import RETURN_WINDOW


@dataclass
class RunConfig:
    """What every run has, whatever the algorithm."""

    algo: str = "ppo"
    """Algorithm name (pg, ppo, qlearn, qeval, dqn, sac, td3)."""
    env_id: str = "CartPole-v1"
    """Gymnasium environment id."""
    workers: int = 2
    """Rollout worker actors."""
    envs_per_worker: int = 4
    """Sub-environments in each worker's vector env."""
    total_steps: int = 100_000
    """Env-step budget for the run."""
    seed: int = 0
    """Run seed; each worker and sub-env derives its own from it."""
    backend: Literal["ray", "local"] = "ray"
    """Where the rollout workers run: Ray actors, or plain objects in this process (debugging)."""
    address: str | None = None
    """Ray cluster address; None starts an embedded local Ray (RAY_ADDRESS is honoured)."""
    num_cpus: int | None = None
    """CPUs for the embedded local Ray (default: this machine's count)."""
    run_dir: str | None = None
    """Output directory (default runs/<algo>-<env>-<time>)."""
    replay: str | None = None
    """Off-policy replay: 'memory', a redis:// or rediss:// URL, or None for a managed local Redis."""
    replay_name: str | None = None
    """Redis buffer name (default: the run directory's name); runs that share it share data."""
    stop_return: float | None = None
    """Stop early once the mean return of the last ``return_window`` episodes reaches this."""
    return_window: int = RETURN_WINDOW
    """Episodes in the trailing mean (console, return_mean_window, stop_return)."""
    checkpoint_every: int = 20
    """Checkpoint every N iterations (on-policy) or report intervals (off-policy)."""
    learner_threads: int = 1
    """torch intra-op threads for the learner; 1 leaves the other cores to the workers."""
    learner: Literal["local", "actor", "auto"] = "auto"
    """Where updates run: in the driver (local), a Ray actor (actor), or auto: actor on a joined cluster."""
    learner_cpus: float = 1.0
    """CPUs reserved for a learner actor; its torch threads are at least this many."""
    learner_resources: dict[str, float] = field(default_factory=dict)
    """More Ray resources for a learner actor, e.g. {GPU: 1} (a CPU key overrides learner_cpus)."""
    report_interval_s: float = 2.0
    """Seconds between metrics rows for the asynchronous off-policy driver."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for gymnasium.make (e.g. is_slippery: false)."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML-parsed value to the dataclass field type, or raise a one-line error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise TandemError(f"--set {key}={value!r}: choose one of {list(typing.get_args(tp))}")
        return value
    if origin is tuple:
        if isinstance(value, int):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TandemError(f"--set {key}={value!r}: expected a list like [64,64]")
        return tuple(int(v) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TandemError(f"--set {key}={value!r}: expected a mapping like {{a: 1}}")
        return value
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError):
        raise TandemError(f"--set {key}={value!r}: expected {tp.__name__}") from None
    return value


def apply_overrides(cfg: Any, overrides: dict[str, Any], source: str) -> None:
    """Set dataclass fields from ``overrides``; an unknown key is an error that lists valid ones."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in overrides.items():
        if key not in names:
            raise TandemError(
                f"unknown {source} key {key!r} for {type(cfg).__name__}: "
                f"valid keys are {', '.join(sorted(names))}"
            )
        setattr(cfg, key, _coerce(value, hints[key], key))


def parse_set(items: list[str]) -> dict[str, Any]:
    """['lr=1e-3', 'hidden=[64,64]'] -> {'lr': 0.001, 'hidden': [64, 64]} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TandemError(f"--set {item!r}: expected key=value, e.g. --set lr=3e-4")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TandemError(f"config file {p} does not exist: pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise TandemError(f"config file {p} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TandemError(f"config file {p} must hold a mapping of key: value")
    return data


RECORD_ONLY_KEYS = ("framework", "on_policy")
"""Keys :func:`to_yaml_dict` writes for readers of the run directory; set by the code, not the
user, so a run's config.yaml passed back as ``--config`` skips them."""


def split_overrides(run: RunConfig, algo_cfg: Any, overrides: dict[str, Any], source: str) -> None:
    """Route each flat key to the run config or the algorithm config (algorithm wins no ties:
    the two share no field names). A nested ``algo_config:`` mapping is also accepted."""
    nested = overrides.pop("algo_config", None) or {}
    for key in RECORD_ONLY_KEYS:
        overrides.pop(key, None)
    run_names = {f.name for f in dataclasses.fields(run)}
    algo_names = {f.name for f in dataclasses.fields(algo_cfg)}
    run_part = {k: v for k, v in overrides.items() if k in run_names}
    algo_part = {k: v for k, v in overrides.items() if k not in run_names}
    unknown = [k for k in algo_part if k not in algo_names]
    if unknown:
        raise TandemError(
            f"unknown {source} key {unknown[0]!r}: valid keys are {', '.join(sorted(run_names | algo_names))}"
        )
    apply_overrides(run, run_part, source)
    apply_overrides(algo_cfg, {**nested, **algo_part}, source)


def to_yaml_dict(run: RunConfig, algo_cfg: Any) -> dict[str, Any]:
    """The fully resolved config as written to config.yaml (and read back by --resume).

    Besides the two configs it records ``on_policy`` (from the algorithm's registry entry), so
    readers such as the dashboard know which driver ran without knowing algorithm names.
    """
    from tandem.learners.registry import get_algo

    d = dataclasses.asdict(run)
    if d.get("replay") and "@" in d["replay"]:
        # Never write a Redis password to disk; --resume asks for the URL again.
        from tandem.replay.errors import redact

        d["replay"] = redact(d["replay"])
    d["algo_config"] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(algo_cfg).items()
    }
    d["on_policy"] = get_algo(run.algo).on_policy
    d["framework"] = "tandem"
    return d
