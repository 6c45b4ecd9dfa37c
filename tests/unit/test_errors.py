"""Every user-facing error is a TandemError, so the CLI's one handler turns it into one line."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tandem.core.errors import TandemError

ROOT = Path(__file__).resolve().parents[2]
# replay/ is excluded until its ReplayError subclasses TandemError (the replay branch).
AUDITED = ("core", "agents", "learners", "runner", "cluster", "dashboard", "tandem", "benchmarks")


def exception_classes() -> list[tuple[str, str]]:
    """(module, class) for every class named *Error defined at the top of an audited module."""
    out = []
    for package in AUDITED:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            rel = path.relative_to(ROOT).with_suffix("")
            module = (
                ".".join(rel.parts)
                if package in ("tandem", "benchmarks")
                else "tandem." + ".".join(rel.parts)
            )
            out += [
                (module, n.name)
                for n in tree.body
                if isinstance(n, ast.ClassDef) and n.name.endswith("Error")
            ]
    return out


def test_the_audit_finds_the_known_error_classes():
    found = {name for _, name in exception_classes()}
    assert {"TandemError", "ReportError", "BaselineError"} <= found


@pytest.mark.parametrize(("module", "name"), exception_classes())
def test_user_error_classes_subclass_tandem_error(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, TandemError), f"{module}.{name} must subclass tandem.core.errors.TandemError"


def test_registry_errors_subclass_tandem_error():
    from tandem.learners.registry import UnknownAlgorithm, get_algo

    with pytest.raises(TandemError, match="choose one of"):
        get_algo("a3c")
    assert issubclass(UnknownAlgorithm, TandemError)


def test_bad_tabular_settings_are_tandem_errors(tmp_path):
    import numpy as np

    from tandem.learners.tabular_eval import policy_table

    with pytest.raises(TandemError, match="cannot load"):
        policy_table(str(tmp_path / "missing.npy"), 4, 2)
    np.save(tmp_path / "bad.npy", np.ones((3, 2)))
    with pytest.raises(TandemError, match=r"\[S, A\]=\[4, 2\]"):
        policy_table(str(tmp_path / "bad.npy"), 4, 2)


def test_unbounded_box_is_a_tandem_error():
    import gymnasium as gym
    import numpy as np

    from tandem.agents.continuous import ActionScaler

    with pytest.raises(TandemError, match="finite action bounds"):
        ActionScaler(gym.spaces.Box(-np.inf, np.inf, (2,)))
