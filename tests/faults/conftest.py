"""At the end of a pytest session that ran fault cases: aggregate their JSON lines into
benchmarks/results/faults.json (the latest row of every case) and print the summary table."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.faults.summary import DEFAULT, read_rows, table, write_summary

_START = time.time()


def pytest_sessionfinish(session, exitstatus) -> None:
    source = Path(os.environ.get("TANDEM_FAULTS_OUT") or DEFAULT)
    if not any(r.get("time", 0) >= _START for r in read_rows(source)):
        return  # no fault case ran in this session: leave faults.json as it is
    rows = write_summary(source)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", f"fault suite: {source.with_suffix('.json')}")
        reporter.write_line(table(rows))
