"""scripts/setup.sh and scripts/test.sh (the README's commands, and .ci/run) on a simulated
fresh machine: every outside command is a shim on PATH that logs its call, so the cases run
as root, as a user with sudo and as a user without, in milliseconds and without installing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.faults.summary import record

ROOT = Path(__file__).resolve().parents[2]
REAL = ("bash", "dirname", "mkdir", "env", "cat", "chmod", "printf")

SHIM = """#!/bin/bash
echo "{name} $*" >> "$LOG"
{body}
"""
PYTHON3 = r"""
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  for t in pip ruff pytest; do
    printf '#!/bin/bash\necho "%s $*" >> "$LOG"\n' "$t" > "$3/bin/$t"; chmod +x "$3/bin/$t"
  done
  exit 0
fi
case "$*" in *ensurepip*) exit "${ENSUREPIP_RC:-0}";; esac
exit 0
"""


def sandbox(tmp_path: Path, have: set[str]) -> tuple[Path, dict]:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".ci").mkdir()
    for rel in ("scripts/setup.sh", "scripts/test.sh", ".ci/run"):
        shutil.copy(ROOT / rel, repo / rel)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in REAL:
        os.symlink(shutil.which(tool), bin_ / tool)
    shims = {
        "id": 'echo "${FAKE_UID:-1000}"',
        "sudo": 'exec "$@"',
        "apt-get": "exit 0",
        "python3": PYTHON3,
        "redis-server": "",
        "chromium": "",
        "chromedriver": "",
    }
    for name, body in shims.items():
        if name in ("id", "apt-get", "python3") or name in have:
            (bin_ / name).write_text(SHIM.format(name=name, body=body))
            (bin_ / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {"PATH": str(bin_), "LOG": str(log), "HOME": str(tmp_path)}
    return repo, env


def run(tmp_path, have, script="scripts/test.sh", **env_extra):
    repo, env = sandbox(tmp_path, have)
    p = subprocess.run(
        ["/bin/bash", str(repo / script)],
        capture_output=True,
        text=True,
        env={**env, **env_extra},
        timeout=60,
    )
    log = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    # The shims' own calls only (drop `id`), in order.
    return p, [ln for ln in log if not ln.startswith("id ")]


ALL = {"sudo", "redis-server", "chromium", "chromedriver"}


def test_as_root_without_sudo_installs_what_is_missing(tmp_path):
    p, calls = run(tmp_path, have=set(), FAKE_UID="0", ENSUREPIP_RC="1")
    assert p.returncode == 0, p.stderr
    assert not any(c.startswith("sudo") for c in calls)
    install = next(c for c in calls if "apt-get install" in c)
    assert install.endswith("install -y -qq python3-venv redis-server chromium chromium-driver"), install
    pips = [c for c in calls if c.startswith("pip install")]
    assert pips == [
        "pip install -q --upgrade pip",
        "pip install -q torch==2.13.0",
        "pip install -q -e .[dev]",
    ]
    assert calls[-3:] == ["ruff check .", "ruff format --check .", "pytest -q"]
    record("setup_script_root_no_sudo", exit_code=p.returncode, apt=install.split("-qq ", 1)[1])


def test_as_a_user_with_sudo_apt_goes_through_sudo(tmp_path):
    p, calls = run(tmp_path, have={"sudo", "redis-server"}, FAKE_UID="1000")
    assert p.returncode == 0, p.stderr
    apt = [c for c in calls if "apt-get" in c]
    assert apt and all(
        c.startswith("sudo env DEBIAN_FRONTEND=noninteractive apt-get") for c in apt if "sudo" in c
    )
    assert sum(c.startswith("sudo ") for c in calls) == 2
    assert "install -y -qq chromium chromium-driver" in apt[-1]
    record("setup_script_user_sudo", exit_code=p.returncode, sudo_calls=2)


def test_as_a_user_without_sudo_it_says_so(tmp_path):
    p, calls = run(tmp_path, have=set(), FAKE_UID="1000")
    assert p.returncode == 1
    assert "needs root: run as root or install sudo" in p.stderr
    assert not any(c.startswith("pip") for c in calls)


def test_nothing_missing_means_no_apt(tmp_path):
    p, calls = run(tmp_path, have=ALL, FAKE_UID="1000")
    assert p.returncode == 0, p.stderr
    assert not any("apt-get" in c for c in calls)


def test_the_user_setup_installs_no_dev_extras_and_no_test_packages(tmp_path):
    p, calls = run(tmp_path, have={"sudo"}, script="scripts/setup.sh", FAKE_UID="1000")
    assert p.returncode == 0, p.stderr
    assert not any("apt-get" in c for c in calls)  # python3 with venv is there
    assert [c for c in calls if c.startswith("pip install -q -e")] == ["pip install -q -e ."]
    assert not any(c.startswith(("ruff", "pytest")) for c in calls)


def test_ci_runs_the_same_script(tmp_path):
    p, calls = run(tmp_path, have=ALL, script=".ci/run")
    assert p.returncode == 0, p.stderr
    assert calls[-1] == "pytest -q" and (tmp_path / "repo" / "artifacts").is_dir()


@pytest.mark.parametrize("n", [0, 1])
def test_readme_two_commands_are_the_scripts(n):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", section, re.S)
    assert len(blocks) == 2
    assert "sudo" not in blocks[n]
    expected = ("bash scripts/setup.sh && .venv/bin/tandem train", "bash scripts/test.sh")[n]
    assert blocks[n].startswith(expected), blocks[n]
