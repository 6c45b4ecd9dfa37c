"""Tandem: distributed actor-learner reinforcement learning on Ray.

Installed, the repository's top-level folders are subpackages of this one (``tandem.core``,
``tandem.learners``, ...; see ``[tool.setuptools]`` in pyproject.toml), so that no generic
top-level name such as ``core`` lands in site-packages. In a source checkout the same names
resolve to the folders beside this one: the checkout works without an install, and a second
checkout (a git worktree) imports its own code rather than the installed one.
"""

from pathlib import Path as _Path

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "core" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (the package's own module search path)

__version__ = "0.1.0"
