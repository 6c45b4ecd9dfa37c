"""``tandem report``: one self-contained HTML file with the dashboard's plots.

The report is the dashboard page (``dashboard/static``) with its stylesheet, ``plotly.min.js``
(from the installed plotly package) and ``dashboard.js`` inlined, and the data of every run
(:meth:`dashboard.data.RunStore.snapshot`) embedded as JSON. It opens offline, from
a file or an e-mail attachment, and keeps the dashboard's filters and x-axis switch.

``--png`` saves one image per panel by screenshotting the report in headless Chromium
through playwright (the same rendering as the page, no second plotting code path). The
browser is ``$TANDEM_CHROMIUM`` or ``$BROWSER_PATH`` if set, else ``chromium`` /
``chromium-browser`` / ``google-chrome`` on the PATH, else playwright's own download.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tandem.core.errors import TandemError
from tandem.core.metrics import RETURN_WINDOW
from tandem.dashboard.data import RunStore
from tandem.dashboard.server import STATIC_DIR, plotly_js_path, print_issues

PANELS = {
    "efficiency": "panel-efficiency",
    "reuse": "panel-reuse",
    "throughput": "panel-throughput",
    "runs": "panel-runs",
}
"""PNG name suffix -> the page section it shows."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class ReportError(TandemError):
    """Bad input for a report (no runs, unwritable output, no browser for --png): one line."""


def _inline_script(code: str) -> str:
    # "</script" inside inline code would end the element early; "<\/" means the same in JS.
    return re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)


def build_html(data: dict) -> str:
    """The report page for a :meth:`RunStore.snapshot` (plotly, css, js and data inlined)."""
    page = (STATIC_DIR / "index.html").read_text()
    css = (STATIC_DIR / "dashboard.css").read_text()
    js = (STATIC_DIR / "dashboard.js").read_text()
    plotly_js = plotly_js_path().read_text()
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False)
    blob = blob.replace("</", "<\\/").replace("<!--", "<\\u0021--")
    parts = {
        '<link rel="stylesheet" href="static/dashboard.css">': f"<style>\n{css}</style>",
        '<script src="static/plotly.min.js"></script>': f"<script>{_inline_script(plotly_js)}</script>",
        '<script src="static/dashboard.js"></script>': (
            f'<script id="tandem-data" type="application/json">{blob}</script>\n'
            f"<script>\n{_inline_script(js)}</script>"
        ),
    }
    for tag, inline in parts.items():
        if tag not in page:
            raise RuntimeError(f"dashboard/static/index.html lost its {tag!r} tag")
        page = page.replace(tag, inline)
    return page.replace("<title>Tandem · sample efficiency</title>", "<title>Tandem report</title>")


def write_report(
    roots: Sequence[str | os.PathLike],
    output: str | os.PathLike = "report.html",
    png: bool = False,
    smooth: int = RETURN_WINDOW,
    quiet: bool = False,
) -> Path:
    """Write the report for the runs under ``roots``; with ``png``, also ``<stem>-<panel>.png``.

    Raises :class:`ReportError` for a missing runs dir, no runs at all, or an unwritable
    output. Malformed metric lines do not stop the report: they are printed and listed in it.
    """
    missing = [str(r) for r in roots if not Path(r).exists()]
    if missing:
        raise ReportError(f"runs dir {missing[0]!r} does not exist")
    store = RunStore(roots, smooth=smooth)
    issues = store.refresh(force_scan=True)
    if not store.runs:
        raise ReportError(
            f"no runs found in {', '.join(map(str, roots))} (a run dir holds metrics.jsonl, config.yaml "
            "or status.json)"
        )
    if not quiet:
        print_issues([i for i in issues if i.run is not None], sys.stderr, prog="tandem report")
    html = build_html(store.snapshot())
    out = Path(output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as e:
        raise ReportError(f"cannot write {str(out)!r}: {e.strerror or e}") from None
    if png:
        for path in render_pngs(out):
            if not quiet:
                print(f"tandem report: wrote {path}")
    return out


def find_chromium() -> str | None:
    """A Chromium/Chrome executable to drive, or None to let playwright use its own."""
    for var in ("TANDEM_CHROMIUM", "BROWSER_PATH"):
        path = os.environ.get(var)
        if path and Path(path).is_file():
            return path
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render_pngs(
    html: str | os.PathLike, out_dir: str | os.PathLike | None = None, width: int = 1500
) -> list[Path]:
    """Screenshot each panel of a report into ``<stem>-<panel>.png`` (network blocked).

    Runs playwright in its own thread, so it also works where an event loop is already
    running (Jupyter, or a caller that drives its own playwright session).
    """
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ReportError(
            "--png needs playwright (pip install playwright) and a Chromium: set TANDEM_CHROMIUM or "
            "install chromium"
        ) from None
    html = Path(html).resolve()
    out_dir = Path(out_dir) if out_dir else html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {}

    def work() -> None:
        try:
            result["paths"] = _screenshot_panels(html, out_dir, width)
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread
            result["error"] = e

    thread = threading.Thread(target=work, name="tandem-report-png")
    thread.start()
    thread.join()
    if "error" in result:
        e = result["error"]
        if isinstance(e, ReportError):
            raise e
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ReportError(
            f"--png: headless Chromium failed ({first}); set TANDEM_CHROMIUM to a working chromium"
        ) from None
    return result["paths"]


def _screenshot_panels(html: Path, out_dir: Path, width: int) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as p:
        exe = find_chromium()
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS) if exe else p.chromium.launch()
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1.5)
            page.route(
                "**/*",
                lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort(),
            )
            page.goto(html.as_uri())
            page.wait_for_function("document.body.dataset.rendered >= 1", timeout=60_000)
            page.add_style_tag(content=".controls { position: static; }")  # not over the panels
            page.wait_for_timeout(300)
            for name, sel in PANELS.items():
                path = out_dir / f"{html.stem}-{name}.png"
                page.locator(f"#{sel}").screenshot(path=str(path))
                written.append(path)
        finally:
            browser.close()
    return written
