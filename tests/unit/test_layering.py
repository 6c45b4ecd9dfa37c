"""The dependency direction, checked on the source.

    tandem (CLI) -> cluster -> runner -> learners, agents, replay -> core
                 -> dashboard -> core
    benchmarks   -> anything

Every package lists the roots it must not import. ``cluster`` is the only package that
imports ray; ``dashboard`` reads run directories and imports neither ray nor torch.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBS = {"torch", "ray", "redis", "gymnasium"}
PACKAGES = ("core", "agents", "learners", "replay", "runner", "cluster", "dashboard", "tandem")
FORBIDDEN = {
    "core": LIBS | {"agents", "learners", "replay", "runner", "cluster", "dashboard"},
    "agents": {"ray", "redis", "learners", "replay", "runner", "cluster", "dashboard"},
    "learners": {"ray", "redis", "replay", "runner", "cluster", "dashboard"},
    "replay": {"torch", "ray", "gymnasium", "agents", "learners", "runner", "cluster", "dashboard"},
    "runner": {"ray", "cluster", "dashboard"},
    "cluster": {"dashboard"},
    "dashboard": {"torch", "ray", "redis", "gymnasium", "agents", "learners", "replay", "runner", "cluster"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names imported by ``path``; ``tandem.x`` counts as ``x``."""
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    roots = set()
    for name in names:
        parts = name.split(".")
        roots.add(parts[1] if parts[0] == "tandem" and len(parts) > 1 else parts[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package):
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        hits = imported_roots(path) & FORBIDDEN[package]
        if hits:
            bad[str(path.relative_to(ROOT))] = sorted(hits)
    assert not bad, f"{package} must not import {sorted(FORBIDDEN[package])}: {bad}"


def test_only_cluster_imports_ray():
    for package in PACKAGES:
        if package in ("cluster", "tandem"):
            continue
        for path in (ROOT / package).rglob("*.py"):
            assert "ray" not in imported_roots(path), path


def test_library_packages_never_import_tests_or_benchmarks():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            assert not imported_roots(path) & {"tests", "benchmarks"}, path
