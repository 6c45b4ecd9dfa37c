"""Browser fixtures shared by the dashboard and report tests."""

import os
from pathlib import Path

import pytest

from tandem.dashboard.report import CHROMIUM_ARGS, find_chromium


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium: .ci/run installs it with apt-get")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots go: $TANDEM_ARTIFACTS (kept by CI) or a temp dir."""
    path = Path(os.environ.get("TANDEM_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path
