"""The deployment files under deploy/ parse, hang together, and run `tandem train` the way we think.

No cluster, no Docker, no Redis: YAML and text checks, Ray's own launcher schema, and a replay of the
three shells a RayJob entrypoint goes through (KubeRay's submitter, `ray job submit`, the job server)
with stand-ins for `ray` and `tandem`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RAYJOB = DEPLOY / "kuberay" / "rayjob.yaml"
RAYCLUSTER = DEPLOY / "kuberay" / "raycluster.yaml"
REDIS = DEPLOY / "redis" / "redis.yaml"
LAUNCHER = DEPLOY / "ray-cluster.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"


@functools.cache
def load(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of ``path`` (cached: treat the result as read-only)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one(path: Path, kind: str) -> dict[str, Any]:
    docs = [d for d in load(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{path.name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def parse_train_args(argv: list[str]) -> dict[str, str]:
    """['train', '--algo', 'sac', ...] -> {'algo': 'sac', ...} (flags without a value map to '')."""
    assert argv[:1] == ["train"], argv
    out: dict[str, str] = {}
    i = 1
    while i < len(argv):
        assert argv[i].startswith("--"), argv[i]
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        out[argv[i][2:]] = argv[i + 1] if has_value else ""
        i += 2 if has_value else 1
    return out


# ------------------------------------------------------------------------------------------ all YAML


def test_every_yaml_under_deploy_parses():
    files = sorted(p for ext in ("*.yaml", "*.yml") for p in DEPLOY.rglob(ext))
    assert {RAYJOB, RAYCLUSTER, REDIS, LAUNCHER} <= set(files)
    for path in files:
        docs = load(path)
        assert docs, f"{path} holds no YAML document"
        for d in docs:
            assert isinstance(d, dict), f"{path}: a document is not a mapping"


# ------------------------------------------------------------------------------------------- KubeRay


def ray_pod_specs(cluster_spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group name, rayStartParams, pod spec) for the head and each worker group."""
    head = cluster_spec["headGroupSpec"]
    out = [("head", head["rayStartParams"], head["template"]["spec"])]
    for g in cluster_spec["workerGroupSpecs"]:
        out.append((g["groupName"], g["rayStartParams"], g["template"]["spec"]))
    return out


@pytest.mark.parametrize(
    "path, kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["raycluster", "rayjob"]
)
def test_kuberay_kinds_and_cluster_shape(path: Path, kind: str):
    doc = one(path, kind)
    assert doc["apiVersion"] == "ray.io/v1"
    spec = doc["spec"]["rayClusterSpec"] if kind == "RayJob" else doc["spec"]
    assert spec["rayVersion"] == "2.60.0"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # rollout workers stay off the head
    for group, params, pod in ray_pod_specs(spec):
        # KubeRay's rayStartParams is map[string]string: a bare YAML number is rejected by the CRD.
        assert all(isinstance(v, str) for v in params.values()), (group, params)
        (container,) = pod["containers"]
        assert container["image"].startswith("tandem:"), container["image"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])
    for g in spec["workerGroupSpecs"]:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


@pytest.mark.parametrize("path, kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")])
def test_head_reads_the_redis_password_from_the_redis_secret(path: Path, kind: str):
    doc = one(path, kind)
    spec = doc["spec"]["rayClusterSpec"] if kind == "RayJob" else doc["spec"]
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in head["env"]}
    ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    secret = one(REDIS, "Secret")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_rayjob_is_a_one_shot_run():
    spec = one(RAYJOB, "RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode")
    (head,) = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    runs = next(m for m in head["volumeMounts"] if m["name"] == "runs")
    volumes = {v["name"]: v for v in spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]}
    claim = volumes["runs"]["persistentVolumeClaim"]["claimName"]
    assert one(RAYJOB, "PersistentVolumeClaim")["metadata"]["name"] == claim
    assert runs["mountPath"] == "/home/ray/runs"


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins on a private PATH, as /bin/sh scripts (fast): `fake-ray-job-submit` prints the words
    after `--` NUL-separated (the test shlex.joins them, as Ray's CLI does on Linux), and `tandem`
    writes its argv NUL-separated to $ARGV_OUT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    submit = bin_dir / "fake-ray-job-submit"
    submit.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift\nprintf \'%s\\0\' "$@"\n')
    tandem = bin_dir / "tandem"
    tandem.write_text('#!/bin/sh\nprintf \'%s\\0\' "$@" > "$ARGV_OUT"\n')
    for p in (submit, tandem):
        p.chmod(0o755)
    return {"bin": bin_dir, "submit": submit, "argv": tmp_path / "argv"}


def nul_split(data: str) -> list[str]:
    return data.split("\0")[:-1]


def run_job_on_head(job_entrypoint: str, fakes: dict[str, Path], password: str) -> list[str]:
    """What Ray's job server does on the head: `Popen(entrypoint, shell=True)` with the head's env."""
    env = {
        "PATH": f"{fakes['bin']}{os.pathsep}{os.environ['PATH']}",
        "REDIS_PASSWORD": password,
        "ARGV_OUT": str(fakes["argv"]),
    }
    subprocess.run(job_entrypoint, shell=True, env=env, check=True, timeout=30)
    return nul_split(fakes["argv"].read_text())


def test_rayjob_entrypoint_runs_tandem_train_with_the_password_expanded_on_the_head(fakes):
    entrypoint = one(RAYJOB, "RayJob")["spec"]["entrypoint"]
    assert "tandem train" in entrypoint
    # 1. KubeRay's submitter pod (K8sJobMode): the entrypoint is pasted into `/bin/bash -ce` after
    #    `ray job submit ... --`. REDIS_PASSWORD there is a decoy: it must not be expanded in that shell.
    submitter = subprocess.run(
        ["/bin/bash", "-ce", "--", f"{fakes['submit']} --address http://head:8265 -- {entrypoint} ;"],
        env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": "SUBMITTER-SIDE"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    job_entrypoint = shlex.join(nul_split(submitter.stdout))  # as `ray job submit` sends it (Linux)
    # 2. What Ray's job table stores: the variable, not the password.
    assert "${REDIS_PASSWORD}" in job_entrypoint and "SUBMITTER-SIDE" not in job_entrypoint
    # 3. The job server on the head, where the Secret is in the environment.
    argv = run_job_on_head(job_entrypoint, fakes, password="0123abcd" * 8)
    args = parse_train_args(argv)
    assert args["algo"] == "sac" and args["env"] == "HalfCheetah-v5" and args["workers"] == "8"
    assert args["replay"] == f"redis://:{'0123abcd' * 8}@tandem-redis:6379/0"
    assert args["address"] == "auto"
    assert re.fullmatch(r"/home/ray/runs/sac-HalfCheetah-v5-\d{8}-\d{6}", args["run-dir"])
    # HTTPMode skips the submitter shell: the job server gets the entrypoint as written; same result.
    assert parse_train_args(run_job_on_head(entrypoint, fakes, password="0123abcd" * 8)) == args


def test_rayjob_replay_url_points_at_the_redis_service_and_workers_fit_the_cluster(fakes):
    spec = one(RAYJOB, "RayJob")["spec"]
    args = parse_train_args(run_job_on_head(spec["entrypoint"], fakes, password="pw"))
    svc = one(REDIS, "Service")
    assert args["replay"] == f"redis://:pw@{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}/0"
    # Tandem sizes rollout workers from the CPUs that are up at start: the fixed worker groups must
    # hold --workers at one CPU each, or workers would share cores.
    cpus = sum(
        g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
        for g in spec["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert cpus >= int(args["workers"])


def test_raycluster_usage_submits_tandem_train():
    text = RAYCLUSTER.read_text()
    assert (
        "ray job submit" in text and "tandem train --algo ppo" in text and "tandem train --algo sac" in text
    )


# --------------------------------------------------------------------------------------------- Redis


def redis_conf() -> dict[str, str]:
    conf = one(REDIS, "ConfigMap")["data"]["redis.conf"]
    lines = [ln.split("#")[0].strip() for ln in conf.splitlines()]
    return dict(ln.split(None, 1) for ln in lines if ln)


def test_redis_config_bounds_memory_without_eviction_and_persists():
    conf = redis_conf()
    assert re.fullmatch(r"\d+[kmg]b?", conf["maxmemory"].lower())
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["appendonly"] == "yes"
    # requirepass is not in the ConfigMap: the container writes it from the Secret into the include.
    assert "requirepass" not in conf
    sts = one(REDIS, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert "requirepass" in " ".join(container["args"]) and conf["include"].startswith("/run/")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["REDIS_PASSWORD"] == {"name": "tandem-redis", "key": "password"}
    assert one(REDIS, "Service")["spec"]["ports"][0]["port"] == 6379


# --------------------------------------------------------------------------------------- ray up YAML


def test_launcher_config_matches_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("ray")  # locates the package without importing it
    if spec is None or spec.origin is None:
        pytest.skip("ray is not installed")
    schema = json.loads((Path(spec.origin).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(load(LAUNCHER)[0], schema)


def test_launcher_installs_torch_first_and_documents_usage():
    cfg = load(LAUNCHER)[0]
    cmds = cfg["setup_commands"]
    torch_at = next(i for i, c in enumerate(cmds) if "torch==2.13.0" in c)
    package_at = next(i for i, c in enumerate(cmds) if "~/tandem" in c and "pip install" in c)
    assert torch_at < package_at
    assert cfg["file_mounts"]["~/tandem"] == "."
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0}
    text = LAUNCHER.read_text()
    assert "ray up deploy/ray-cluster.yaml" in text
    assert "ray job submit -- tandem train --algo ppo --env CartPole-v1 --workers 16 --address auto" in text
    redis_setup = " ".join(cfg["head_setup_commands"])
    for directive in ("maxmemory ", "maxmemory-policy noeviction", "appendonly yes", "requirepass"):
        assert directive in redis_setup


# ------------------------------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_installs_pinned_torch_before_the_package_and_runs_as_non_root():
    ins = dockerfile_instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    runs = [(i, args) for i, (op, args) in enumerate(ins) if op == "RUN"]
    torch_at = next(i for i, a in runs if re.search(r"pip install \S*torch==2\.13\.0", a))
    package_at = next(i for i, a in runs if re.search(r"pip install \.(\s|$)", a))
    assert torch_at < package_at
    assert any("redis-server" in a and "apt-get install" in a for _, a in runs)
    users = [args for op, args in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ins[[op for op, _ in ins].index("ENTRYPOINT")][1] == '["tandem"]'
    # every package the CLI imports is copied in
    copied = " ".join(args for op, args in ins if op == "COPY")
    for pkg in (
        "core",
        "agents",
        "learners",
        "replay",
        "runner",
        "cluster",
        "dashboard",
        "tandem",
        "pyproject.toml",
    ):
        assert pkg in copied, pkg
