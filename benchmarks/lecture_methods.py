"""a2c and rwr (issue 14, items 1 and 2): the target runs and two measurements of the lecture's points.

    python -m benchmarks.lecture_methods targets [--seeds 3] [--only a2c_cartpole ...]
    python -m benchmarks.lecture_methods variance  [--seed 0]
    python -m benchmarks.lecture_methods gradients [--seed 0]

- ``targets``: ``tandem train`` (2 workers x 4 envs, the normal CLI path) to a 20-episode mean:
  a2c CartPole-v1 475 within 200k env steps and InvertedPendulum-v5 900 within 300k; rwr
  CartPole-v1 475 within 200k and Pendulum-v1 -400 within 50k. Medians over seeds.
- ``variance``: pg beside a2c, same reuse (1), lower variance. One CartPole policy and critic
  (trained by a2c for ``--train-steps``), frozen; K fresh batches from it; on each batch the
  policy-gradient estimate ĝ = 1/B Σ_t ∇ log π(a_t|s_t) Ψ_t with Ψ_t = R̂_t - V(s_t) (pg's
  Monte-Carlo reward-to-go, bootstrapped only at a time limit or the fragment end) and with
  Ψ_t = G_t - V(s_t) for a2c's TD(λ) and n-step targets. Reported: tr Cov over the K batch
  estimates (the estimator's variance), and within the first batch tr Cov of the per-sample
  terms / B (same batch, same states, same actions: only Ψ differs).
- ``gradients``: the RWR gradient ∇ 1/B Σ w_i log π(a_i|s_i) and the policy gradient
  1/B Σ ρ_i Â_i ∇ log π(a_i|s_i) (ρ_i = π_θ(a_i|s_i) / π_behaviour(a_i|s_i), 1 on fresh data)
  on the same states and actions, (a) fresh from π_θ, (b) replayed from older policies
  (snapshots of the same training run). Â_i = R_i - V(s_i) with the reward-to-go R_i of the
  finished episode, the score the rwr learner uses. Reported: cosine similarity, ‖g_rwr‖/‖g_pg‖
  and ‖g_rwr/‖g_rwr‖ - g_pg/‖g_pg‖‖, plus the cosine between the PG estimates of two halves of
  the fresh data (the noise floor: how close two estimates of the same gradient get).

The last two run in-process (no Ray): a learner, :class:`runner.worker.RolloutWorker` and the
math in ``learners/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, rolling_threshold, run_tandem, summarize

CASES = {
    "a2c_cartpole": dict(algo="a2c", env_id="CartPole-v1", threshold=475.0, budget=200_000),
    "a2c_invertedpendulum": dict(algo="a2c", env_id="InvertedPendulum-v5", threshold=900.0, budget=300_000),
    "rwr_cartpole": dict(algo="rwr", env_id="CartPole-v1", threshold=475.0, budget=200_000),
    "rwr_pendulum": dict(algo="rwr", env_id="Pendulum-v1", threshold=-400.0, budget=50_000),
}
RESULTS = ROOT / "benchmarks" / "results"


def run_in_process(algo: str, env_id: str, seed: int, total: int, threshold: float) -> tuple[Path, float]:
    """The real driver without Ray (``train()`` on the local backend, in-memory replay): 2
    workers x 4 envs, as the CLI runs them. Returns the run directory and the wall seconds."""
    from benchmarks.direct import train_local

    t0 = time.perf_counter()
    run_dir = train_local(
        algo, env_id, seed=seed, budget=total, threshold=threshold, window=20, workers=2, num_envs=4
    )
    return run_dir, time.perf_counter() - t0


def targets(seeds: list[int], only: list[str], replay: str | None, in_process: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in only:
        case = CASES[name]
        results = []
        for seed in seeds:
            extra = ["--replay", replay] if replay and case["algo"] == "rwr" else []
            if in_process:
                run_dir, secs = run_in_process(
                    case["algo"], case["env_id"], seed, case["budget"], case["threshold"]
                )
            else:
                run_dir, secs = run_tandem(
                    case["algo"], case["env_id"], seed, case["budget"], case["threshold"], extra=extra
                )
            res = rolling_threshold(run_dir, case["threshold"])
            res.update(seed=seed, process_s=round(secs, 2), run_dir=str(run_dir))
            print(name, json.dumps(res), flush=True)
            results.append(res)
        summary = summarize(results)
        summary.update(
            target_env_steps=case["budget"],
            threshold=case["threshold"],
            return_window=20,
            path="in-process loop (no Ray)" if in_process else "tandem train CLI, 2 workers x 4 envs",
        )
        steps = summary["median_env_steps_to_threshold"]
        summary["meets_step_target"] = steps is not None and steps <= case["budget"]
        out[name] = summary
    return out


# ------------------------------------------------------------------ in-process helpers


def _workers(algo: str, cfg: Any, seed: int, n: int = 2, envs: int = 4):
    from tandem.runner.worker import RolloutWorker

    return [
        RolloutWorker("CartPole-v1", envs, algo, cfg, seed=seed, worker_index=i, num_workers=n)
        for i in range(n)
    ]


def train_a2c(seed: int, steps: int, snapshot_every: int = 0):
    """An a2c learner trained in-process on CartPole; returns (learner, [(env_steps, weights)])."""
    import gymnasium as gym
    import torch

    from tandem.core.types import concat_rollouts
    from tandem.learners.a2c import A2CConfig, A2CLearner

    torch.manual_seed(seed)
    cfg = A2CConfig()
    env = gym.make("CartPole-v1")
    learner = A2CLearner(env.observation_space, env.action_space, cfg)
    workers = _workers("a2c", cfg, seed)
    done, version, snaps = 0, 0, [(0, learner.get_weights())]
    weights = learner.get_weights()
    while done < steps:
        rollouts = [w.sample(cfg.fragment_length, weights, version, done / steps) for w in workers]
        done += sum(r.num_steps for r in rollouts)
        learner.set_progress(done / steps)
        learner.update(concat_rollouts(rollouts))
        version += 1
        weights = learner.get_weights()
        if snapshot_every and done // snapshot_every != (done - 64) // snapshot_every:
            snaps.append((done, weights))
    return learner, snaps


def per_sample_score_grads(model, obs, actions):
    """∇_θ log π_θ(a_i|s_i) for every i, as a [B, P] matrix (θ: the policy net only)."""
    import torch
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.pi.named_parameters()}

    def logp(p, x, a):
        logits = functional_call(model.pi, p, (x[None],))[0]
        return torch.log_softmax(logits, -1).gather(0, a[None])[0]

    x = model.obs_tensor(obs)
    g = vmap(grad(logp), in_dims=(None, 0, 0))(params, x, torch.as_tensor(actions))
    return torch.cat([g[k].reshape(len(x), -1) for k in params], dim=1).double()


def _trace_cov(rows) -> float:
    """tr Cov of the rows of a [K, P] matrix (unbiased)."""
    c = rows - rows.mean(0, keepdim=True)
    return float((c * c).sum() / (rows.shape[0] - 1))


def variance(seed: int, train_steps: int, batches: int, fragment: int) -> dict[str, Any]:
    import torch

    from tandem.learners.a2c import A2CConfig, a2c_targets
    from tandem.learners.on_policy import critic_values
    from tandem.learners.returns import reward_to_go

    learner, _ = train_a2c(seed, train_steps)
    m, weights = learner.model, learner.get_weights()
    workers = _workers("a2c", learner.cfg, seed + 1000)
    estimators = {
        "pg_mc_baseline": None,
        "a2c_lambda_0.95": A2CConfig(target="lambda", gae_lambda=0.95),
        "a2c_n_step_8": A2CConfig(target="n_step", n_steps=8),
    }
    batch_grads: dict[str, list] = {k: [] for k in estimators}
    within: dict[str, float] = {}
    returns: list[float] = []
    for k in range(batches):
        from tandem.core.types import concat_rollouts

        ro = concat_rollouts([w.sample(fragment, weights, 1) for w in workers])
        returns.extend(ro.episode_returns.tolist())
        values, next_values = critic_values(m, ro)
        G = per_sample_score_grads(m, ro.obs.reshape(-1, 4), ro.actions.reshape(-1))
        for name, cfg in estimators.items():
            if cfg is None:
                psi = reward_to_go(ro.rewards, ro.terminated, ro.truncated, next_values, 0.99) - values
            else:
                psi, _ = a2c_targets(ro, values, next_values, cfg)
            terms = G * torch.as_tensor(psi.reshape(-1), dtype=torch.float64)[:, None]
            batch_grads[name].append(terms.mean(0))
            if k == 0:
                within[name] = _trace_cov(terms) / len(terms)
    across = {name: _trace_cov(torch.stack(gs)) for name, gs in batch_grads.items()}
    means = {name: torch.stack(gs).mean(0) for name, gs in batch_grads.items()}
    mean_norm = {name: float(g.norm()) for name, g in means.items()}
    base = across["pg_mc_baseline"]
    cos = torch.nn.functional.cosine_similarity
    return {
        "env": "CartPole-v1",
        "policy_trained_env_steps": train_steps,
        "policy_mean_return_during_measurement": float(np.mean(returns)) if returns else None,
        "batch_env_steps": fragment * 8,
        "batches": batches,
        "trace_cov_across_batches": across,
        "trace_cov_within_first_batch_over_B": within,
        "variance_ratio_to_pg": {k: v / base for k, v in across.items()},
        "norm_of_mean_gradient": mean_norm,
        # The learners standardize Ψ per batch, so the scale-free figure is noise over signal:
        # tr Cov(ĝ) / ‖E ĝ‖², with E ĝ estimated by the mean over the K batches.
        "relative_variance": {k: across[k] / mean_norm[k] ** 2 for k in across},
        "cosine_of_mean_gradient_to_pg": {
            k: float(cos(g, means["pg_mc_baseline"], dim=0)) for k, g in means.items()
        },
        "note": "raw Ψ (no per-batch normalisation), same frozen policy and critic for all three",
    }


def gradients(seed: int, train_steps: int, fresh_steps: int, beta: float) -> dict[str, Any]:
    import torch

    from tandem.core.types import Batch
    from tandem.learners.rwr import WEIGHTINGS, RWRConfig, make_adder, rwr_score, rwr_weights

    EXTRAS = ("logp", "rtg", "boot_discount", "boot_obs")

    learner, snaps = train_a2c(seed, train_steps, snapshot_every=train_steps // 6)
    m = learner.model
    current = learner.get_weights()
    old = snaps[1:-1]  # the older policies of the run, as a replay buffer would hold them

    def collect(weights_list, steps_each: int, seed_off: int):
        """Rows of finished episodes written by rwr's EpisodeAdder: obs, actions, logp_b, R."""
        cfg = RWRConfig()
        rows: dict[str, list] = {
            k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated", *EXTRAS)
        }
        for j, (_, w) in enumerate(weights_list):
            worker = _workers("a2c", learner.cfg, seed + seed_off + j, n=1, envs=8)[0]
            worker.policy.set_weights(w, 1)
            adder = make_adder(cfg, worker.policy)
            got = 0
            while got < steps_each:
                b = adder(worker.sample(64))
                if b is not None:
                    got += len(b)
                    for k in ("obs", "actions", "rewards", "next_obs", "terminated"):
                        rows[k].append(getattr(b, k))
                    for k in EXTRAS:
                        rows[k].append(b.extras[k])
        return {k: np.concatenate(v) for k, v in rows.items()}

    def compare(data, weighting: str):
        G = per_sample_score_grads(m, data["obs"], data["actions"])
        x = m.obs_tensor(data["obs"])
        with torch.no_grad():
            d = m.dist(x)
            logp = m.log_prob(d, torch.as_tensor(data["actions"])).double()
            boot = m.value(m.obs_tensor(data["boot_obs"])).double()
            R = torch.as_tensor(data["rtg"], dtype=torch.float64)
            R = R + torch.as_tensor(data["boot_discount"], dtype=torch.float64) * boot
            v = m.value(x).double()
            adv = R - v
        rho = (logp - torch.as_tensor(data["logp"], dtype=torch.float64)).exp()
        # The rwr learner's own score function, on the same rows.
        rows = Batch(
            **{k: data[k] for k in ("obs", "actions", "rewards", "next_obs", "terminated")},
            truncated=np.zeros(len(data["rewards"]), bool),
        )
        value_fn = lambda obs: m.value(m.obs_tensor(obs)).double()  # noqa: E731
        score = rwr_score(weighting, rows, R, v, value_fn, RWRConfig().gamma)
        w = rwr_weights(score, beta, RWRConfig().max_weight).double()
        g_pg = (G * (rho * adv)[:, None]).mean(0)
        g_rwr = (G * w[:, None]).mean(0)
        half = len(G) // 2
        g1 = (G[:half] * (rho * adv)[:half, None]).mean(0)
        g2 = (G[half:] * (rho * adv)[half:, None]).mean(0)
        cos = torch.nn.functional.cosine_similarity
        # The policy gradient with the weighting's own score as Ψ (1/β Σ u_i ∇ log π is the
        # first-order term of the RWR gradient): Ψ = δ for td, Â for advantage, R for return.
        g_own = (G * (rho * score.double())[:, None]).mean(0)
        return {
            "samples": len(G),
            "cosine_rwr_pg": float(cos(g_rwr, g_pg, dim=0)),
            "cosine_rwr_pg_own_score": float(cos(g_rwr, g_own, dim=0)),
            "cosine_pg_own_score_pg": float(cos(g_own, g_pg, dim=0)),
            "norm_ratio_rwr_over_pg": float(g_rwr.norm() / g_pg.norm()),
            "unit_vector_distance": float((g_rwr / g_rwr.norm() - g_pg / g_pg.norm()).norm()),
            "cosine_pg_half_vs_half": float(cos(g1, g2, dim=0)),
            "mean_importance_ratio": float(rho.mean()),
            "importance_ratio_std": float(rho.std()),
        }

    fresh = collect([(train_steps, current)], fresh_steps, 5000)
    replayed = collect(old, fresh_steps // len(old), 6000)
    return {
        "env": "CartPole-v1",
        "policy": f"a2c after {train_steps} env steps; old policies at {[s for s, _ in old]} env steps",
        "beta": beta,
        "fresh_on_policy": {w: compare(fresh, w) for w in WEIGHTINGS},
        "replayed_older_policies": {w: compare(replayed, w) for w in WEIGHTINGS},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("targets")
    t.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    t.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    t.add_argument("--replay", default=None, help="rwr's --replay (default: managed local Redis)")
    t.add_argument("--in-process", action="store_true", help="the drivers' loop without Ray")
    v = sub.add_parser("variance")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--train-steps", type=int, default=30_000)
    v.add_argument("--batches", type=int, default=16)
    v.add_argument("--fragment", type=int, default=256)
    g = sub.add_parser("gradients")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--train-steps", type=int, default=20_000)
    g.add_argument("--fresh-steps", type=int, default=8_000)
    g.add_argument("--beta", type=float, default=1.0)
    for p in (t, v, g):
        p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.cmd == "targets":
        out = targets(args.seeds, args.only, args.replay, args.in_process)
    elif args.cmd == "variance":
        out = variance(args.seed, args.train_steps, args.batches, args.fragment)
    else:
        out = gradients(args.seed, args.train_steps, args.fresh_steps, args.beta)
    out["benchmark_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
