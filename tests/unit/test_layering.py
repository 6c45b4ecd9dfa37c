"""The dependency direction cluster -> learners, agents, replay -> core, checked on the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "core": {"torch", "ray", "redis", "gymnasium", "agents", "learners", "replay", "cluster"},
    "agents": {"ray", "redis", "learners", "replay", "cluster"},
    "learners": {"ray", "redis", "replay", "cluster"},
    "replay": {"torch", "ray", "agents", "learners", "cluster"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
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
    for package in ("core", "agents", "learners", "replay"):
        for path in (ROOT / package).rglob("*.py"):
            assert "ray" not in imported_roots(path), path
