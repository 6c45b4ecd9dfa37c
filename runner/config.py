"""Run configuration: one typed dataclass for the run, one per algorithm, resolved in order
defaults -> algorithm preset -> ``--config FILE.yaml`` -> ``--set key=value``."""

from __future__ import annotations

import dataclasses
import math
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
    workers: int | str = 2
    """Rollout workers: N, MIN:MAX (elastic: start with what fits, grow toward MAX), or auto (1:CPUs)."""
    envs_per_worker: int = 4
    """Sub-environments in each worker's vector env."""
    vector_env: Literal["auto", "gymnasium", "envpool"] = "auto"
    """Workers' vector env: Gymnasium's, EnvPool's, or auto (EnvPool where it matched and was faster)."""
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
    """Off-policy replay: 'memory', redis:// or rediss:// URL(s) (comma-separated: shards), None: managed."""
    replay_shards: int = 1
    """Redis servers the off-policy replay is spread over (managed ones, or one --replay URL each)."""
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


def _show(value: Any, limit: int = 60) -> str:
    """repr(value), cut to ``limit`` characters so that one bad value keeps the error one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_workers(spec: int | str, cluster_cpus: int | None = None) -> tuple[int, int | None]:
    """``--workers`` as ``(MIN, MAX)``: ``N`` -> (N, N), ``MIN:MAX`` -> (MIN, MAX), ``auto`` ->
    (1, cluster_cpus) (MAX None while the cluster's CPU count is unknown)."""
    text = str(spec).strip().lower()
    try:
        if text == "auto":
            return 1, (max(1, int(cluster_cpus)) if cluster_cpus is not None else None)
        lo_text, sep, hi_text = text.partition(":")
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError:
        lo, hi = 0, -1
    if not 1 <= lo <= hi:
        raise TandemError(
            f"--workers {spec!r}: expected N (at least 1), MIN:MAX with 1 <= MIN <= MAX (e.g. 2:8), or auto"
        )
    return lo, hi


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML-parsed value to the dataclass field type, or raise a one-line error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if type(value) in args:  # ``int | str``: keep what YAML parsed (3 stays 3, "2:4" stays text)
            return value
        return _coerce(value, args[0], key)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise TandemError(f"--set {key}={_show(value)}: choose one of {list(typing.get_args(tp))}")
        return value
    if origin is tuple:
        if isinstance(value, int):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TandemError(f"--set {key}={_show(value)}: expected a list like [64,64]")
        try:
            return tuple(_coerce(v, int, key) for v in value)
        except TandemError:
            raise TandemError(
                f"--set {key}={_show(value)}: expected a list of whole numbers like [64,64]"
            ) from None
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TandemError(f"--set {key}={_show(value)}: expected a mapping like {{a: 1}}")
        return value
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if tp is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError, OverflowError):
        raise TandemError(f"--set {key}={_show(value)}: expected {tp.__name__}") from None
    return value


@dataclass(frozen=True)
class Rule:
    """A valid range for a config value, checked when the value is set (before anything starts)."""

    lo: float | None = None
    """Smallest valid value (None: unbounded below)."""
    hi: float | None = None
    """Largest valid value (None: unbounded above)."""
    lo_open: bool = False
    """The range excludes ``lo`` itself (lr > 0 rather than lr >= 0)."""

    def check(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def describe(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in [{self.lo:g}, {self.hi:g}]"


POSITIVE = Rule(0, lo_open=True)
NON_NEGATIVE = Rule(0)
PROBABILITY = Rule(0, 1)

FIELD_RULES: dict[str, Rule] = {
    # RunConfig
    **dict.fromkeys(
        ["workers", "envs_per_worker", "total_steps", "return_window", "checkpoint_every"], POSITIVE
    ),
    "replay_shards": POSITIVE,
    **dict.fromkeys(["learner_threads", "num_cpus", "report_interval_s"], POSITIVE),
    "seed": NON_NEGATIVE,
    # Algorithm configs, matched by field name whatever the algorithm
    **dict.fromkeys(["gamma", "gae_lambda", "tau", "epsilon_start", "epsilon_end"], PROBABILITY),
    **dict.fromkeys(["exploration_fraction", "apex_epsilon", "priority_beta"], PROBABILITY),
    **dict.fromkeys(["lr", "vf_lr", "actor_lr", "critic_lr", "alpha_lr", "lr_final"], POSITIVE),
    **dict.fromkeys(
        ["fragment_length", "batch_size", "replay_capacity", "epochs", "num_minibatches"], POSITIVE
    ),
    **dict.fromkeys(["vf_minibatches", "n_step", "target_update_interval", "policy_frequency"], POSITIVE),
    **dict.fromkeys(["policy_delay", "weights_publish_interval", "hidden"], POSITIVE),
    **dict.fromkeys(["samples_per_insert", "huber_delta", "max_grad_norm", "init_alpha"], POSITIVE),
    **dict.fromkeys(["clip_eps", "target_kl"], POSITIVE),
    **dict.fromkeys(["min_size", "entropy_coef", "vf_coef", "bonus_c", "lr_count_power"], NON_NEGATIVE),
    **dict.fromkeys(["exploration_noise", "policy_noise", "noise_clip", "apex_alpha"], NON_NEGATIVE),
    **dict.fromkeys(["priority_alpha"], NON_NEGATIVE),
    **dict.fromkeys(["priority_eps"], POSITIVE),
    # the lecture's later methods: a2c, rwr, dynaq, mbsac, and the count bonus
    **dict.fromkeys(["n_steps", "max_hold_steps", "simhash_bits", "ensemble_size"], POSITIVE),
    **dict.fromkeys(["model_hidden", "model_batch", "model_train_steps", "model_lr"], POSITIVE),
    **dict.fromkeys(["model_data_capacity", "model_buffer_capacity"], POSITIVE),
    **dict.fromkeys(["rollout_interval", "rollout_batch", "rollout_length"], POSITIVE),
    **dict.fromkeys(["beta", "max_weight", "return_stats_rate"], POSITIVE),
    **dict.fromkeys(["planning_steps", "planning_seed", "model_warmup", "bonus_beta"], NON_NEGATIVE),
    "real_ratio": PROBABILITY,
}
"""Valid range of each numeric field, by name, for RunConfig and every algorithm config. A
float field not listed here must still be finite (``--stop-return nan`` is a mistake)."""

REPLAY_FORMS = ("memory", "redis://", "rediss://", "unix://")


def check_value(key: str, value: Any, source: str = "--set") -> None:
    """Raise a one-line TandemError if ``value`` (already coerced) is out of ``key``'s range."""
    if key == "replay" and value is not None:
        parts = str(value).split(",")
        if not (value == "memory" or all(p.strip().startswith(REPLAY_FORMS[1:]) for p in parts)):
            raise TandemError(
                f"{source} replay={_show(value)}: expected memory, redis://[:pw@]host:port/db, rediss://... "
                "or unix:///path/redis.sock, comma-separated for shards (or leave it unset for managed Redis)"
            )
        return
    values = value if isinstance(value, tuple) else (value,)
    rule = FIELD_RULES.get(key)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise TandemError(f"{source} {key}={_show(v)}: must be a finite number")
        if rule is not None and not rule.check(v):
            what = "at least 1" if rule is POSITIVE and isinstance(v, int) else rule.describe()
            raise TandemError(f"{source} {key}={_show(v)}: must be {what}")


def apply_overrides(cfg: Any, overrides: dict[str, Any], source: str) -> None:
    """Set dataclass fields from ``overrides``; an unknown key is an error that lists valid ones,
    and a value outside its field's range (:data:`FIELD_RULES`) is an error before anything starts."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in overrides.items():
        if key not in names:
            raise TandemError(
                f"unknown {source} key {key!r} for {type(cfg).__name__}: "
                f"valid keys are {', '.join(sorted(names))}"
            )
        coerced = _coerce(value, hints[key], key)
        check_value(key, coerced, source)
        setattr(cfg, key, coerced)


def parse_set(items: list[str]) -> dict[str, Any]:
    """['lr=1e-3', 'hidden=[64,64]'] -> {'lr': 0.001, 'hidden': [64, 64]} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise TandemError(f"--set {item!r}: expected key=value, e.g. --set lr=3e-4")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except (yaml.YAMLError, ValueError, RecursionError):
            # Not YAML (or a number too long for int()): keep the text; the field's type decides.
            out[key.strip()] = raw
    return out


def _read_mapping(p: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in ``p``, or a one-line TandemError naming ``what`` the file is for."""
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise TandemError(f"{what} {p} is not UTF-8 text (byte {e.start}): save it as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise TandemError(f"{what} {p} is not valid YAML ({str(e).splitlines()[0]})") from None
    except (ValueError, RecursionError) as e:  # a number too long for int(), nesting too deep
        raise TandemError(f"{what} {p} is not usable YAML ({type(e).__name__})") from None
    except OSError as e:
        raise TandemError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise TandemError(f"{what} {p} must hold a mapping of key: value")
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TandemError(f"config file {p} does not exist: pass an existing YAML file to --config")
    return _read_mapping(p, "config file")


def read_run_yaml(path: str | Path) -> dict[str, Any]:
    """A run directory's config.yaml as a mapping with an ``algo`` name, or a one-line error
    (empty, truncated or hand-edited files reach --resume and eval)."""
    p = Path(path)
    data = _read_mapping(p, "run config")
    hint = f"restore {p} (it is written at the start of a run) or start a new run"
    if not data:
        raise TandemError(f"run config {p} is empty: {hint}")
    for key in ("algo", "env_id"):
        if not isinstance(data.get(key), str):
            raise TandemError(f"run config {p} has no {key}: (truncated?) {hint}")
    if not isinstance(data.get("algo_config") or {}, dict):
        raise TandemError(f"run config {p}: algo_config is not a mapping: {hint}")
    return data


RECORD_ONLY_KEYS = ("framework", "on_policy", "replay_managed")
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
    # Tandem started the replay's redis-servers: their passwords are fresh each start and never
    # stored; --resume starts new servers on the run directory's AOF files.
    d["replay_managed"] = run.replay is None and not d["on_policy"]
    d["framework"] = "tandem"
    return d
