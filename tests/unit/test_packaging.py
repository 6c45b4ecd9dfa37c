"""The installed package has one top-level name, ``tandem``; tests/ and benchmarks/ stay out."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    had_build = (ROOT / "build").exists()
    # No build isolation: the venv's setuptools builds it, so the test needs no package index.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
        + ["."],
        cwd=ROOT,
        check=True,
        timeout=240,
    )
    if not had_build:  # setuptools stages the wheel in ./build: leave the checkout as it was
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    (path,) = out.glob("tandem_rl-*.whl")
    return path


def test_wheel_has_one_top_level_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"tandem"}, tops


def test_wheel_maps_every_folder_under_tandem_and_ships_the_dashboard(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("core", "agents", "learners", "replay", "runner", "cluster", "dashboard"):
        assert f"tandem/{pkg}/__init__.py" in names, pkg
    assert "tandem/cli.py" in names
    assert {"tandem/dashboard/static/index.html", "tandem/dashboard/static/dashboard.js"} <= names
    outside = ("tandem/tests/", "tandem/benchmarks/", "tests/", "benchmarks/")
    assert not any(n.startswith(outside) for n in names)


def test_console_script_points_into_the_namespace(wheel):
    meta = zipfile.ZipFile(wheel)
    (entry,) = [n for n in meta.namelist() if n.endswith("entry_points.txt")]
    assert "tandem = tandem.cli:main" in meta.read(entry).decode()
