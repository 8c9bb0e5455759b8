"""Every params.yaml section validates; bad values fail before any work, naming key and value."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.papers import discover
from tasks.errors import ParamsError
from tasks.params import DEFAULT_PARAMS, ROOT, load_all

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
    (lambda r: r["nm_sparsity"]["prune"].update(patterns=["2:4", "5:4"]), "nm_sparsity.prune.patterns", "'5:4'"),
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
