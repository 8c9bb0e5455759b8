"""MLflow tracking: curves as step metrics, parent headline metrics, run names and tags,
compute-time spans, links from cached stage runs, stale RUNNING runs, and a sqlite store that
survives a kill -9 during its creation (a real half-migrated database)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from tasks.platform import artifacts, tracking
from tasks.platform.stage import MANIFEST, StageResult

def _kill_during_creation(path: Path, how: str) -> int:
    """A real kill -9 in the middle of MLflow's schema creation, in a forked child: right after
    the migration that creates the ``secrets`` table ran its DDL, before alembic recorded the
    revision. MLflow on such a file then fails for good with "table secrets already exists"
    (issue #18). ``how``: "mlflow" (what MLflow does on its own, and this project did before)
    or "ensure_store". Returns the child's wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            import sqlalchemy
            from sqlalchemy import event

            def kill(conn, cursor, statement, *a):
                if statement.lstrip().upper().startswith("CREATE TABLE SECRETS"):
                    os.kill(os.getpid(), signal.SIGKILL)

            event.listen(sqlalchemy.engine.Engine, "after_cursor_execute", kill)
            if how == "mlflow":
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                SqlAlchemyStore(f"sqlite:///{path}", path.parent.as_uri())
            else:
                tracking.ensure_store(f"sqlite:///{path}")
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    tracking.ensure_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def store(tmp_path, template_db, monkeypatch) -> Path:
    """A fresh, complete store of this test's own."""
    db = tmp_path / "mlflow.db"
    shutil.copy(template_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("REPROLAB_MLARTIFACTS", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("REPROLAB_MLFLOW", "1")
    return db


class _Params(BaseModel):
    lr: float = 0.1
    hidden: list[int] = [8, 4]


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri())


# ---- metric shapes (pure) ---------------------------------------------------------------------
def test_history_becomes_one_curve_per_seed_and_quantity() -> None:
    flat = artifacts.flat_metrics({"num_classes": 10, "seeds": {
        "0": {"val": {"acc": 0.9}, "history": [{"epoch": 0.0, "val_loss": 1.0, "train_loss": 2.0},
                                               {"epoch": 1.0, "val_loss": 0.5, "train_loss": 1.5}]},
        "1": {"val": {"acc": 0.8}, "history": [{"epoch": 0.0, "val_loss": 1.1}]}}})
    scalars, curves = tracking.split_curves(flat)
    assert scalars == {"num_classes": 10.0, "seeds.0.val.acc": 0.9, "seeds.1.val.acc": 0.8}
    assert sorted(curves) == [("train/seed0/train_loss", 1.5, 1), ("train/seed0/train_loss", 2.0, 0),
                              ("train/seed0/val_loss", 0.5, 1), ("train/seed0/val_loss", 1.0, 0),
                              ("train/seed1/val_loss", 1.1, 0)]


def test_headline_metrics_carry_each_claim_value_and_the_verdict_counts() -> None:
    claims = {"claims": [
        {"claim": "2:4 sparsity keeps accuracy within 1 pt", "verdict": "reproduced", "value": 0.4, "lo": 0.1, "hi": 0.9},
        {"claim": "10x faster on GPU", "verdict": "not testable at this scale", "value": None, "lo": None, "hi": None}],
        "counts": {"reproduced": 1, "not reproduced": 0, "not testable at this scale": 1}}
    metrics, tags = tracking.headline_metrics(claims)
    assert metrics == {"claim1.2_4_sparsity_keeps_accuracy_within": 0.4,
                       "claim1.2_4_sparsity_keeps_accuracy_within.ci_lo": 0.1,
                       "claim1.2_4_sparsity_keeps_accuracy_within.ci_hi": 0.9,
                       "verdicts.reproduced": 1.0, "verdicts.not_reproduced": 0.0, "verdicts.not_testable": 1.0}
    assert tags == {"reprolab.verdict.claim1": "reproduced", "reprolab.verdict.claim2": "not testable at this scale"}


# ---- runs ---------------------------------------------------------------------------------------
def _stage_result(tmp_path: Path, seconds: float, reused: bool = False) -> StageResult:
    d = tmp_path / "store" / "toy" / "train" / "k123"
    sha = artifacts.write(d / "metrics.json", {"x": 1})
    res = StageResult("toy", "train", "k123", {"metrics": {"path": str(d / "metrics.json"), "sha256": sha}}, {},
                      "ph", {"seeds.0.history.0.val_loss": 1.0, "seeds.0.history.1.val_loss": 0.5,
                             "seeds.0.history.2.val_loss": 0.25, "seeds.0.val.acc": 0.9}, seconds, reused)
    if not (d / MANIFEST).exists():
        artifacts.write(d / MANIFEST, res.to_json())
    return res


def test_parent_and_stage_runs(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tracking, "prefect_flow_run", lambda: {"id": "fr-1234", "name": "witty-otter"})
    params = _Params()
    tr = tracking.Tracker("toy", "smoke", "prefect")
    client = _client()
    exp = client.get_experiment(tr.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on runs, not traces
    parent_id = tr.start(params, overrides={"prune": {"patterns": ["2:4"]}})
    computed = tr.log_stage(_stage_result(tmp_path, seconds=12.5), None, cached=False)
    cached = tr.log_stage(_stage_result(tmp_path, seconds=0.01, reused=True), None, cached=True)
    n = tr.log_headline({"claims": [{"claim": "c one", "verdict": "reproduced", "value": 2.0}],
                         "counts": {"reproduced": 1}}, {"pipeline.seconds": 30.0})
    tr.finish()

    parent = client.get_run(parent_id)
    assert parent.info.run_name == "toy-smoke+overrides-witty-otter"
    assert parent.data.tags["reprolab.prefect.flow_run_id"] == "fr-1234"
    assert parent.data.tags["reprolab.prefect.flow_run_name"] == "witty-otter"
    assert json.loads(parent.data.tags["reprolab.overrides"]) == {"prune": {"patterns": ["2:4"]}}
    assert parent.data.tags["reprolab.pid"] == str(os.getpid())
    assert parent.data.tags["reprolab.host"] == socket.gethostname()
    assert n == 3 and parent.data.metrics == {"claim1.c_one": 2.0, "verdicts.reproduced": 1.0, "pipeline.seconds": 30.0}
    assert parent.info.status == "FINISHED"

    run = client.get_run(computed)
    assert run.info.end_time - run.info.start_time == 12500  # the stage's compute time, not logging time
    curve = client.get_metric_history(computed, "train/seed0/val_loss")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert not any("history" in k for k in run.data.metrics)
    assert run.data.metrics["seeds.0.val.acc"] == 0.9

    reuse = client.get_run(cached)
    assert reuse.data.tags["reprolab.computed_by_run"] == computed
    assert computed in reuse.data.tags["mlflow.note.content"]
    assert reuse.data.metrics["compute_seconds"] == 12.5  # from the store manifest
    assert reuse.info.end_time - reuse.info.start_time < 12500


def test_run_name_outside_prefect_has_the_time(store) -> None:
    tr = tracking.Tracker("toy", "full", "prefect")
    rid = tr.start(_Params())
    tr.finish()
    name = _client().get_run(rid).info.run_name
    assert name.startswith("toy-full-20") and len(name) == len("toy-full-20261206-173000")
    assert "reprolab.prefect.flow_run_id" not in _client().get_run(rid).data.tags


def test_stale_running_runs_of_dead_processes_are_marked_killed(store) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    tr = tracking.Tracker("toy", "smoke", "prefect")
    client = _client()
    host = socket.gethostname()

    def running(pid: int, h: str = host) -> str:
        return client.create_run(tr.experiment_id, tags={"reprolab.pid": str(pid), "reprolab.host": h}).info.run_id

    gone, alive, elsewhere = running(dead.pid), running(os.getpid()), running(dead.pid, "another-host")
    untagged = client.create_run(tr.experiment_id).info.run_id
    new = tr.start(_Params())
    assert client.get_run(gone).info.status == "KILLED"
    reason = client.get_run(gone).data.tags["reprolab.end_reason"]
    assert f"process {dead.pid} on {host}" in reason and new in reason
    for rid in (alive, elsewhere, untagged):
        assert client.get_run(rid).info.status == "RUNNING"
    # an interrupt (A signal handler) ends the live tracker's runs as KILLED, once
    assert tracking.finish_active("KILLED", "interrupted by SIGINT") == [new]
    run = client.get_run(new)
    assert run.info.status == "KILLED" and run.data.tags["reprolab.end_reason"] == "interrupted by SIGINT"
    tr.finish("FINISHED")  # idempotent: the interrupt's status stays
    assert client.get_run(new).info.status == "KILLED"


def test_finish_closes_a_stage_run_left_open(store, tmp_path, monkeypatch) -> None:
    tr = tracking.Tracker("toy", "smoke", "prefect")
    tr.start(_Params())
    client = _client()

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr.client, "log_artifact", interrupted)  # interrupted while logging outputs
    with pytest.raises(KeyboardInterrupt):
        tr.log_stage(_stage_result(tmp_path, seconds=1.0), None, cached=False)
    (open_run,) = tr._open
    assert client.get_run(open_run).info.status == "RUNNING"
    tr.finish("KILLED", "interrupted")
    assert client.get_run(open_run).info.status == "KILLED"


# ---- the sqlite store ---------------------------------------------------------------------------
def test_kill_during_creation_half_migrates_a_plain_store_and_ensure_store_recovers_it(tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    status = _kill_during_creation(db, "mlflow")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    con = sqlite3.connect(db)
    assert con.execute("select version_num from alembic_version").fetchone()[0] != tracking.schema_head()
    assert con.execute("select name from sqlite_master where name = 'secrets'").fetchone()  # the trap
    con.close()
    os.utime(db, (1e9, 1e9))  # a file nobody writes any more (ensure_store waits for a busy one)
    from mlflow.tracking import MlflowClient

    shutil.copy(db, tmp_path / "copy.db")
    with pytest.raises(Exception, match="table secrets already exists"):  # what users hit before
        MlflowClient(f"sqlite:///{tmp_path / 'copy.db'}").search_experiments()
    tracking.ensure_store(f"sqlite:///{db}")  # no runs in it: moved aside, created anew
    assert [p.name for p in tmp_path.glob("mlflow.db.broken-*")]
    MlflowClient(f"sqlite:///{db}").search_experiments()


def test_kill_during_atomic_creation_leaves_no_store_behind(tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    status = _kill_during_creation(db, "ensure_store")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not db.exists()  # only the temporary file of the killed creator
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".init")]
    tracking.ensure_store(f"sqlite:///{db}")
    assert db.is_file() and not [p for p in tmp_path.iterdir() if p.name.endswith(".init")]
    con = sqlite3.connect(db)
    assert con.execute("select version_num from alembic_version").fetchone()[0] == tracking.schema_head()
    con.close()


def test_a_half_migrated_store_holding_runs_is_refused_naming_the_file(store) -> None:
    tr = tracking.Tracker("toy", "smoke", "dvc")
    _client().create_run(tr.experiment_id)
    con = sqlite3.connect(store)
    con.execute("update alembic_version set version_num = 'bf29a5ff90ea'")
    con.commit()
    con.close()
    os.utime(store, (1e9, 1e9))
    with pytest.raises(tracking.StoreError) as err:
        tracking.ensure_store()
    msg = str(err.value)
    assert str(store) in msg and "bf29a5ff90ea" in msg and "1 run(s)" in msg and "mlflow db upgrade" in msg
    assert store.is_file()  # nothing with runs in it is moved or deleted


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"garbage, not sqlite" * 100)
    os.utime(db, (1e9, 1e9))
    with pytest.raises(tracking.StoreError, match=f"{db}.*not a readable SQLite database"):
        tracking.ensure_store(f"sqlite:///{db}")


def test_claim_slugs_skip_the_our_check_preamble() -> None:
    assert tracking._slug("Our check (not a claim of the paper): KD recovery leaks less membership") \
        == "kd_recovery_leaks_less_membership"
    assert tracking._slug("N:M pruning keeps accuracy: at 50%") == "n_m_pruning_keeps_accuracy_at"
