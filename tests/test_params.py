"""Every params.yaml section validates; bad values fail before any work, naming key and value."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.papers import discover
from tasks.platform.errors import ParamsError
from tasks.platform.params import DEFAULT_PARAMS, ROOT, load_all

PAPERS = {n: p.params_model for n, p in discover().items()}


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_section_validates(profile):
    params = load_all(PAPERS, profile)
    assert set(params) == set(PAPERS)


def test_every_registered_paper_has_a_section_and_smoke_profile():
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    for name in PAPERS:
        assert name in raw, f"params.yaml lacks a section for paper {name!r}"
        assert name in raw["profiles"]["smoke"], f"params.yaml lacks profiles.smoke.{name}"


def test_dvc_yaml_matches_declarations():
    out = subprocess.run([sys.executable, "-m", "tasks", "dvc-yaml", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


BAD = [
    (lambda r: r["nm_sparsity"]["train"].update(epochs=3), "nm_sparsity.train.epochs", "did you mean 'max_epochs'?"),
    (lambda r: r["nm_sparsity"]["train"].update(max_epochs="ten"), "nm_sparsity.train.max_epochs", '"ten"'),
    (lambda r: r["nm_sparsity"]["prune"].update(patterns=["2:4", "5:4"]), "nm_sparsity.prune.patterns", "5:4"),
    (lambda r: r["nm_sparsity"]["prune"].update(patterns=["1:3"]), "M=3 does not divide", "width"),
    (lambda r: r["nm_sparsity"]["train"].update(model={"hidden": [100, 64]}), "M=8 does not divide the input width 100", "hidden"),
    (lambda r: r["nm_sparsity"]["finetune"].update(lr=-1), "nm_sparsity.finetune.lr", "-1"),
    (lambda r: r.update(nm_sparsty={}), "unknown top-level section", "nm_sparsty"),
]


@pytest.mark.parametrize("mutate,key,value", BAD)
def test_bad_params_name_key_and_value(tmp_path, mutate, key, value):
    path = _write(tmp_path, mutate)
    with pytest.raises(ParamsError) as e:
        load_all(PAPERS, "full", path)
    assert key in str(e.value) and value in str(e.value)


def test_cli_exits_nonzero_and_writes_nothing_on_bad_params(tmp_path):
    path = _write(tmp_path, lambda r: r["nm_sparsity"]["prune"].update(patterns=["5:4"]))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = subprocess.run(
        [sys.executable, "-m", "tasks", "run", "--paper", "nm_sparsity", "--stage", "prepare_digits",
         "--params", str(path)], cwd=ROOT, capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "nm_sparsity.prune.patterns" in out.stderr and "5:4" in out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_malformed_yaml_and_unknown_profile(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("nm_sparsity: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_all(PAPERS, "full", bad)
    with pytest.raises(ParamsError, match="profile = 'tiny'"):
        load_all(PAPERS, "tiny")


def test_overrides_merge_and_validate():
    p = load_all(PAPERS, "smoke", overrides={"nm_sparsity": {"prune": {"patterns": ["1:4"]}}})["nm_sparsity"]
    assert p.prune.patterns == ("1:4",)
    with pytest.raises(ParamsError, match="nm_sparsity.prune.patterns"):
        load_all(PAPERS, "smoke", overrides={"nm_sparsity": {"prune": {"patterns": ["9:4"]}}})


# ---- the round-2 probe's params cases (tests/probe_params_cases.py): every one exits 2 ----

from contextlib import redirect_stderr, redirect_stdout  # noqa: E402
from io import StringIO  # noqa: E402

from tasks.__main__ import main  # noqa: E402
from tests.probe_params_cases import CASES, TEXT_CASES  # noqa: E402

#: What the error must name for the 14 the probe found accepted (key path and value / file).
NAMED = {
    12: ("nm_sparsity.train.seeds", "limits.seeds"),
    13: ("nm_sparsity.train.seeds", "duplicate"),
    14: ("nm_sparsity.train.seeds.0 = -1", "2**32"),
    15: ("nm_sparsity.train.seeds.0 = 1180591620717411303424", "2**32"),
    19: ("nm_sparsity", "prune"),
    26: ("params.yaml:18", "duplicate key 'max_epochs' (first at line 17)"),
    37: ("nm_sparsity.train.lr = .inf", "finite"),
    38: ('nm_sparsity.train.model.arch = "resnet"', "mlp"),
    45: ('nm_sparsity.serve.impl = "cuda_magic"', "reference"),
    47: ("nm_sparsity.train.model.hidden.0 = 0", "greater than or equal to 1"),
    48: ("nm_sparsity.data.digits.max_samples = 30", "need >= 134"),
    52: ("nm_sparsity.train.max_epochs = 1000000000000", "limits.epochs"),
    53: ("nm_sparsity.data.mnist1d.noise_scale = .inf", "finite"),
    56: ("nm_sparsity.train.model.hidden.0 = -8", "greater than or equal to 1"),
}


def _validate(path) -> tuple[int, str]:
    err = StringIO()
    with redirect_stderr(err), redirect_stdout(StringIO()):
        code = main(["validate", "--params", str(path)])
    return code, err.getvalue()


@pytest.mark.parametrize("n,desc,edit", CASES, ids=[f"#{c[0]}" for c in CASES])
def test_probe_params_case_is_rejected(tmp_path, n, desc, edit):
    path = _write(tmp_path, edit)
    code, err = _validate(path)
    assert code == 2, f"probe #{n} ({desc}) accepted"
    for part in NAMED.get(n, ()):
        assert part in err, err
    assert "Traceback" not in err and "pydantic.dev" not in err and "validation error for" not in err, err


@pytest.mark.parametrize("n,desc,edit", TEXT_CASES, ids=[f"#{c[0]}" for c in TEXT_CASES])
def test_probe_text_case_is_rejected(tmp_path, n, desc, edit):
    path = tmp_path / "params.yaml"
    path.write_text(edit(DEFAULT_PARAMS.read_text()))
    code, err = _validate(path)
    assert code == 2, f"probe #{n} ({desc}) accepted"
    assert str(path) in err
    for part in NAMED.get(n, ()):
        assert part in err, err


def test_a_limit_is_raised_explicitly_in_params_yaml(tmp_path):
    def edit(raw, limits=None):
        raw["nm_sparsity"]["train"]["max_epochs"] = 20_000
        if limits:
            raw["limits"] = limits

    with pytest.raises(ParamsError, match="limits.epochs = 10000"):
        load_all(PAPERS, "full", _write(tmp_path, edit))
    ok = load_all(PAPERS, "full", _write(tmp_path, lambda r: edit(r, {"epochs": 20_000})))
    assert ok["nm_sparsity"].train.max_epochs == 20_000
    with pytest.raises(ParamsError, match="limits.epoch = 5: unknown key; did you mean 'epochs'"):
        load_all(PAPERS, "full", _write(tmp_path, lambda r: edit(r, {"epoch": 5})))
    with pytest.raises(ParamsError, match="limits.epochs = -1: must be a positive integer"):
        load_all(PAPERS, "full", _write(tmp_path, lambda r: edit(r, {"epochs": -1})))


def test_limits_are_a_load_time_gate_not_a_model_rule():
    """A stage re-validating params that load_all accepted under a raised limit still works."""
    from tasks.train import TrainParams

    assert TrainParams(max_epochs=20_000).max_epochs == 20_000


def test_unknown_keys_suggest_the_nearest_at_any_depth(tmp_path):
    cases = [
        (lambda r: r["nm_sparsity"]["data"]["digits"].update(val_fracton=0.1),
         "nm_sparsity.data.digits.val_fracton = 0.1: unknown key; did you mean 'val_fraction'?"),
        (lambda r: r["logit_standardization"]["arms"]["kd"].update(losss="kd"),
         "logit_standardization.arms.kd.losss = \"kd\": unknown key; did you mean 'loss'?"),
        (lambda r: r["nm_sparsity"].update(trian={}), "nm_sparsity.trian = {...}: unknown key; did you mean 'train'?"),
    ]
    for edit, expected in cases:
        with pytest.raises(ParamsError) as e:
            load_all(PAPERS, "full", _write(tmp_path, edit))
        assert expected in str(e.value)
        assert "valid keys:" in str(e.value)


def test_bad_overrides_read_as_one_line_per_problem():
    with pytest.raises(ParamsError) as e:
        load_all(PAPERS, "smoke", overrides={"nm_sparsity": {"prune": {"patern": ["2:4"]}, "train": {"lr": "fast"}}})
    lines = str(e.value).splitlines()
    assert lines[0] == "invalid params:"
    assert "  nm_sparsity.prune.patern = [\"2:4\"]: unknown key; did you mean 'patterns'?" in str(e.value)
    assert any(line.startswith("  nm_sparsity.train.lr = \"fast\": ") for line in lines)
    assert "input_value" not in str(e.value) and "type=" not in str(e.value)
    with pytest.raises(ParamsError, match="overrides.nm_sparsity = 3: must be a mapping"):
        load_all(PAPERS, "smoke", overrides={"nm_sparsity": 3})


def test_validate_checks_every_profile_by_default(tmp_path):
    path = _write(tmp_path, lambda r: r["profiles"]["smoke"]["nm_sparsity"]["train"].update(seeds=[1, 1]))
    code, err = _validate(path)
    assert code == 2 and "nm_sparsity.train.seeds" in err
