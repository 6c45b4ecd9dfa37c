"""The web dashboard, its data layer and the static report, over run directories.

``data`` reads metrics.jsonl, config.yaml and status.json into a ``RunStore`` (tolerant of
partial and hostile lines); ``server`` serves it over HTTP on 127.0.0.1 by default; ``report``
writes one self-contained HTML file; ``static/`` holds the page, its script and styles.

May import: core and plain libraries (yaml, plotly's bundled JS). Never ray, torch, redis or
gymnasium: the dashboard runs anywhere a run directory can be read (tests/unit/test_layering.py).
"""
