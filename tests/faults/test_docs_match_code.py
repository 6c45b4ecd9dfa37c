"""What deploy/README.md promises about Redis passwords is what the code does."""

from __future__ import annotations

from pathlib import Path

from tandem.cli import main
from tandem.runner.config import to_yaml_dict
from tandem.runner.session import resolve_config
from tests.faults.summary import record

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "deploy" / "README.md").read_text()


def test_config_yaml_stores_no_password_and_the_docs_say_so():
    run, cfg, _ = resolve_config("dqn", "CartPole-v1", {"replay": "redis://:s3cret@db:6379/0"})
    stored = to_yaml_dict(run, cfg)["replay"]
    assert stored == "redis://:***@db:6379/0"
    assert "password included" not in DEPLOY and "reads it\n  back from there" not in DEPLOY
    assert "`redis://:***@" in DEPLOY and "`--resume RUN_DIR` therefore asks for" in DEPLOY


def test_resume_of_a_password_run_asks_for_the_url_again(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("algo: dqn\nenv_id: CartPole-v1\nreplay: redis://:***@db:6379/0\n")
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "pass --replay URL (or set TANDEM_REPLAY_URL) again" in err
    record("docs_redis_password_resume", stored="redis://:***@db:6379/0", resume_asks_again=True)
