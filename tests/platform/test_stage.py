"""The stage shell: declarations, the content-addressed store, atomic and non-destructive writes."""

import pyarrow as pa
import pytest
from pydantic import BaseModel, ConfigDict

from tasks.platform import artifacts
from tasks.platform.errors import ArtifactError
from tasks.platform.stage import Paper, Stage, register_paper, run_stage, store_dir, stage_key, resolve_inputs

CALLS = {"double": 0}


class P(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    make: dict = {"n": 3}
    double: dict = {"k": 2}


def make(params):
    return {"table": pa.table({"x": pa.array(range(params["n"]), pa.int64())})}


def double(params, *, table):
    CALLS["double"] += 1
    x = table.column("x").to_pylist()
    return {"table": pa.table({"x": pa.array([v * params["k"] for v in x], pa.int64())}), "metrics": {"sum": sum(x)}}


SCHEMA = pa.schema([("x", pa.int64())])
TOY = Paper(
    name="toy", title="toy", arxiv="", params_model=P,
    stages=(
        Stage("make", make, params=("make",), outputs={"table": "t.parquet"}, schemas={"table": SCHEMA}),
        Stage("double", double, params=("double",), inputs={"table": "make.table"},
              outputs={"table": "t.parquet", "metrics": "metrics.json"}),
    ),
)


def _run_all(params):
    results = {}
    for st in TOY.stages:
        results[st.name] = run_stage(TOY, st, params, resolve_inputs(st, results))
    return results


def test_store_reuses_and_changing_a_param_reruns_only_downstream():
    p = P(make={"n": 4})
    r1 = _run_all(p)
    calls = CALLS["double"]
    r2 = _run_all(p)
    assert all(r.reused for r in r2.values()) and CALLS["double"] == calls
    assert r2["double"].metrics == {"sum": 6.0}
    r3 = _run_all(P(make={"n": 4}, double={"k": 3}))
    assert r3["make"].reused and not r3["double"].reused
    assert r3["double"].key != r1["double"].key


def test_damaged_store_output_is_recomputed_and_kept_aside():
    p = P(make={"n": 5})
    r = _run_all(p)
    path = r["double"].path("table")
    path.write_bytes(b"garbage")
    again = _run_all(p)
    assert not again["double"].reused
    assert artifacts.read(again["double"].path("table")).column("x").to_pylist() == [0, 2, 4, 6, 8]
    assert any(".damaged." in d.name for d in path.parent.parent.iterdir())


def test_failed_stage_leaves_no_partial_store_dir(monkeypatch):
    p = P(make={"n": 6})
    r = {"make": run_stage(TOY, TOY.stages[0], p, {})}
    st = TOY.stages[1]
    real = artifacts.atomic_write_bytes
    count = {"n": 0}

    def dying(path, data):  # the second output write dies (as a kill would)
        count["n"] += 1
        if count["n"] == 2:
            raise OSError("disk gone")
        real(path, data)

    monkeypatch.setattr(artifacts, "atomic_write_bytes", dying)
    with pytest.raises(OSError):
        run_stage(TOY, st, p, resolve_inputs(st, r))
    key = stage_key(TOY, st, p, resolve_inputs(st, r))
    final = store_dir(TOY, st, key)
    assert not final.exists()
    assert not [d for d in final.parent.iterdir() if d.name.endswith(".partial")]


def test_explicit_out_dir_refuses_to_overwrite_different_content(tmp_path):
    p = P(make={"n": 2})
    run_stage(TOY, TOY.stages[0], p, {}, out_dir=tmp_path)
    run_stage(TOY, TOY.stages[0], p, {}, out_dir=tmp_path)  # same content: fine
    with pytest.raises(ArtifactError, match="refusing to overwrite .*t.parquet"):
        run_stage(TOY, TOY.stages[0], P(make={"n": 3}), {}, out_dir=tmp_path)
    assert artifacts.read(tmp_path / "t.parquet").num_rows == 2
    run_stage(TOY, TOY.stages[0], P(make={"n": 3}), {}, out_dir=tmp_path, overwrite=True)
    assert artifacts.read(tmp_path / "t.parquet").num_rows == 3


def test_schema_checked_on_read(tmp_path):
    p = P()
    bad = tmp_path / "t.parquet"
    artifacts.write(bad, pa.table({"y": pa.array([1.0])}))
    with pytest.raises(ArtifactError, match="schema mismatch in .*t.parquet"):
        run_stage(TOY, TOY.stages[1], p, {"table": bad}, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_input_names_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing artifact: .*nowhere.parquet"):
        run_stage(TOY, TOY.stages[1], P(), {"table": tmp_path / "nowhere.parquet"})


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="duplicate stage name"):
        Paper("x", "x", "", P, (Stage("make", make, ("make",)), Stage("make", make, ("make",))))
    with pytest.raises(ValueError, match="refers to make.nope"):
        Paper("x", "x", "", P, (Stage("make", make, ("make",), outputs={"table": "t.parquet"}),
                                Stage("d", double, ("double",), inputs={"table": "make.nope"})))
    with pytest.raises(ValueError, match="unknown params section 'zzz'"):
        Paper("x", "x", "", P, (Stage("make", make, ("zzz",)),))
    with pytest.raises(ValueError, match="unsupported output"):
        Paper("x", "x", "", P, (Stage("make", make, ("make",), outputs={"m": "m.pkl"}),))


def test_registry_refuses_duplicate_names(monkeypatch):
    import tasks.platform.stage as stage_mod

    monkeypatch.setattr(stage_mod, "_PAPERS", dict(stage_mod._PAPERS))  # keep "toy" out of later discover()
    register_paper(TOY)
    register_paper(TOY)  # the same object again (module re-import) is fine
    clone = Paper("toy", "other", "", P, TOY.stages)
    with pytest.raises(ValueError, match="already registered"):
        register_paper(clone)


SHARED_CALLS = {"make": 0}


def counted_make(params):
    SHARED_CALLS["make"] += 1
    return make(params)


def _sharing_paper(name: str, shared: bool = True) -> Paper:
    return Paper(name=name, title=name, arxiv="", params_model=P, stages=(
        Stage("make", counted_make, params=("make",), outputs={"table": "t.parquet"}, schemas={"table": SCHEMA},
              shared=shared),
        Stage("double", double, params=("double",), inputs={"table": "make.table"},
              outputs={"table": "t.parquet", "metrics": "metrics.json"})))


def test_shared_stage_is_computed_once_for_every_paper_and_entry_point(tmp_path):
    a, b = _sharing_paper("share_a"), _sharing_paper("share_b")
    p = P(make={"n": 7})
    before = SHARED_CALLS["make"]
    ra = run_stage(a, a.stages[0], p, {})
    rb = run_stage(b, b.stages[0], p, {})
    assert SHARED_CALLS["make"] == before + 1  # computed for a, reused for b
    assert not ra.reused and rb.reused and (rb.paper, rb.stage) == ("share_b", "make")
    assert ra.key == rb.key and ra.outputs == rb.outputs
    assert "_shared" in ra.outputs["table"]["path"]
    assert store_dir(a, a.stages[0], ra.key) == store_dir(b, b.stages[0], rb.key)
    # the DVC path (explicit out_dir) copies the stored result instead of recomputing
    rd = run_stage(b, b.stages[0], p, {}, out_dir=tmp_path / "dvc")
    assert SHARED_CALLS["make"] == before + 1
    assert artifacts.read(tmp_path / "dvc" / "t.parquet").column("x").to_pylist() == list(range(7))
    assert rd.outputs["table"]["sha256"] == ra.outputs["table"]["sha256"]
    # ... under the same no-silent-overwrite rule
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        run_stage(b, b.stages[0], P(make={"n": 8}), {}, out_dir=tmp_path / "dvc")
    assert artifacts.read(tmp_path / "dvc" / "t.parquet").num_rows == 7
    # a different param is another shared result; an unshared stage keeps a per-paper key
    assert run_stage(a, a.stages[0], P(make={"n": 8}), {}).key != ra.key
    c = _sharing_paper("share_c", shared=False)
    assert stage_key(c, c.stages[0], p, {}) != ra.key


def test_shared_stage_core_must_not_live_in_a_paper_module():
    from tasks.papers.pld import __name__ as mod  # noqa: F401 - any paper module

    def core(params):
        return make(params)

    core.__module__ = "tasks.papers.pld"
    with pytest.raises(ValueError, match="shared stage's core must live in the shared layers"):
        Paper("x", "x", "", P, (Stage("make", core, ("make",), outputs={"table": "t.parquet"}, shared=True),))
