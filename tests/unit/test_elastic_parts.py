"""Pure parts of node loss and elastic workers: ``--workers`` forms and on-policy batch assembly."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from tandem.core.errors import TandemError
from tandem.runner.assembly import BatchAssembler
from tandem.runner.config import RunConfig, apply_overrides, parse_workers


@pytest.mark.parametrize(
    "spec, cpus, expected",
    [
        (3, None, (3, 3)),
        ("3", None, (3, 3)),
        ("2:8", None, (2, 8)),
        (" 1:1 ", None, (1, 1)),
        ("auto", 6, (1, 6)),
        ("AUTO", None, (1, None)),
        ("auto", 0, (1, 1)),
    ],
)
def test_parse_workers_forms(spec, cpus, expected):
    assert parse_workers(spec, cpus) == expected


@pytest.mark.parametrize("bad", [0, "0", "4:2", "0:3", "a:b", "2:", ":3", "2:3:4", "many", "-1", ""])
def test_parse_workers_rejects_bad_forms_in_one_line(bad):
    with pytest.raises(TandemError) as e:
        parse_workers(bad)
    msg = str(e.value)
    assert "\n" not in msg and "MIN:MAX" in msg and "auto" in msg


def test_workers_key_keeps_ints_and_takes_ranges_from_set_and_yaml():
    run = RunConfig()
    apply_overrides(run, {"workers": 4}, "--set")
    assert run.workers == 4 and isinstance(run.workers, int)
    apply_overrides(run, {"workers": "2:6"}, "--set")
    assert run.workers == "2:6"


def test_cli_rejects_a_bad_workers_form_with_one_line():
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "train", "--algo", "ppo", "--env", "CartPole-v1"]
        + ["--workers", "5:2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert "--workers" in last and "MIN:MAX" in last


def test_cli_parses_workers_forms():
    from tandem.cli import build_parser

    parse = lambda w: build_parser().parse_args(["train", "--workers", w]).workers  # noqa: E731
    assert parse("3") == 3 and parse("2:5") == "2:5" and parse("Auto") == "auto"


def _frag(worker: int) -> SimpleNamespace:
    return SimpleNamespace(worker_index=worker)


def test_assembler_hands_out_exactly_the_missing_fragments():
    asm = BatchAssembler(4)
    assert asm.to_submit([0, 1, 2, 3, 4, 5]) == [0, 1, 2, 3]  # never more than the batch needs
    for i in range(4):
        asm.submitted(f"h{i}", i)
    assert asm.to_submit([0, 1, 2, 3, 4, 5]) == []  # 4 in flight: nothing more
    asm.finished("h0", _frag(0))
    assert asm.failed("h1") == 1  # worker 1 lost: its fragment is owed again
    assert asm.to_submit([0, 2, 3, 4]) == [0]  # busy workers 2, 3 skipped; one missing
    asm.submitted("h5", 0)
    for h, w in [("h2", 2), ("h3", 3), ("h5", 0)]:
        asm.finished(h, _frag(w))
    assert asm.done and not asm.inflight
    assert [r.worker_index for r in asm.batch()] == [0, 0, 2, 3]


def test_assembler_keeps_the_batch_size_with_fewer_workers():
    """Two live workers and a nominal batch of 5 fragments: workers go round until 5 are in."""
    asm = BatchAssembler(5)
    rounds, n = 0, 0
    while not asm.done:
        rounds += 1
        for i in asm.to_submit([7, 9]):
            asm.submitted(n, i)
            n += 1
        for h, w in list(asm.inflight.items()):
            asm.finished(h, _frag(w))
    assert len(asm.batch()) == 5 and rounds == 3 and n == 5
    assert [r.worker_index for r in asm.batch()] == [7, 7, 7, 9, 9]


def test_assembler_with_no_live_worker_submits_nothing():
    asm = BatchAssembler(2)
    assert asm.to_submit([]) == [] and not asm.done
    with pytest.raises(ValueError):
        BatchAssembler(0)


def test_dashboard_runs_table_gets_the_worker_count_over_time(tmp_path):
    import json

    from tandem.dashboard.data import RunStore

    d = tmp_path / "runs" / "ppo-el"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(json.dumps({"algo": "ppo", "env_id": "CartPole-v1", "workers": "1:3"}))
    counts = [3, 3, 2, 2, 3, 1]
    (d / "metrics.jsonl").write_text(
        "".join(json.dumps({"env_steps": 100 * (k + 1), "workers": w}) + "\n" for k, w in enumerate(counts))
    )
    store = RunStore([tmp_path / "runs"])
    store.refresh()
    (run,) = store.runs_json()["runs"]
    assert run["workers"] == "1:3" and run["workers_now"] == 1 and run["workers_range"] == [1, 3]


def test_run_key_is_per_run_directory(tmp_path):
    from tandem.cluster.control import run_key

    assert run_key(tmp_path / "a") == run_key(str(tmp_path / "a"))
    assert run_key(tmp_path / "a") != run_key(tmp_path / "b")


def test_local_backend_takes_the_elastic_form_and_keeps_the_batch(tmp_path):
    """--backend local with MIN:MAX runs MAX in-process workers; each batch is MAX fragments."""
    import json

    from tandem.runner.session import resolve_config
    from tandem.runner.train import train

    run, cfg, spec = resolve_config(
        "ppo",
        "CartPole-v1",
        {
            "workers": "1:3",
            "envs_per_worker": 2,
            "fragment_length": 8,
            "total_steps": 96,
            "backend": "local",
            "run_dir": str(tmp_path / "r"),
            "hidden": [8],
            "epochs": 1,
        },
    )
    out = train(run, cfg, spec, quiet=True)
    data = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in data] == [48, 96] and {r["workers"] for r in data} == {3}
