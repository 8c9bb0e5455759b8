"""Tests for the report renderer: claims with CIs, HTML, lineage/publish, the index page."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pytest

from tasks.platform import artifacts
from tasks.platform.report import (
    Claim,
    Report,
    claims_json,
    lineage_markdown,
    publish,
    render_html,
    render_index,
    render_markdown,
    write_index,
)


def _report() -> Report:
    return Report(
        title="Toy paper", paper="toy", arxiv="2401.00001", summary="Ran the toy | pipeline.",
        claims=[
            Claim("gap <= 1 pt", "dense 0.95, pruned 0.94", "reproduced", "rule: gap <= 1 pt",
                  value=1.0, lo=0.2, hi=1.8, unit="pts"),
            Claim("10x faster on GPU", "not measured", "not testable at this scale", "no GPU"),
        ],
        tables={"Numbers": pa.table({"model": ["dense"], "acc": [0.95]})},
        figures={"Plot": "plot.png"},
        notes=("Small scale.",),
    )


def test_markdown_has_value_ci_and_verdict_counts() -> None:
    md = render_markdown(_report())
    assert "| claim | our measurement | value [95% CI] | verdict | why |" in md
    assert "| 1 [0.2, 1.8] pts | **reproduced** |" in md
    assert "| - | **not testable at this scale** | no GPU |" in md
    assert "Verdicts: 1 reproduced, 1 not testable at this scale" in md
    assert "![Plot](plot.png)" in md


def test_claim_validation() -> None:
    with pytest.raises(ValueError, match="is not one of"):
        Claim("c", "m", "maybe", "w")
    with pytest.raises(ValueError, match="both lo and hi"):
        Claim("c", "m", "reproduced", "w", value=1.0, lo=0.5)
    with pytest.raises(ValueError, match="needs a value"):
        Claim("c", "m", "reproduced", "w", lo=0.5, hi=1.5)
    with pytest.raises(ValueError, match="lower bound"):
        Claim("c", "m", "reproduced", "w", value=1.0, lo=2.0, hi=1.5)


def test_claims_json_round_trips_through_artifacts(tmp_path) -> None:
    data = claims_json(_report())
    artifacts.write(tmp_path / "claims.json", data)
    back = artifacts.read(tmp_path / "claims.json")
    assert back["counts"] == {"reproduced": 1, "not reproduced": 0, "not testable at this scale": 1}
    assert back["claims"][0]["lo"] == 0.2 and back["claims"][1]["value"] is None


def test_html_escapes_title_and_links_html_twins() -> None:
    page = render_html("# T\n\n[report](toy/report.md) [ext](https://x.org/README.md)", "a <b>")
    assert "<title>a &lt;b&gt;</title>" in page
    assert 'href="toy/report.html"' in page
    assert 'href="https://x.org/README.md"' in page


def test_lineage_markdown() -> None:
    md = lineage_markdown({"git_commit": "abc123", "params_hash": "ff"},
                          [{"stage": "train", "key": "k" * 40, "reused": True, "seconds": 1.234,
                            "outputs": {"weights": "0123456789abcdef"}}])
    assert "| git_commit | `abc123` |" in md
    assert "| train | `kkkkkkkkkkkk` | True | 1.23 | weights: `0123456789ab` |" in md


@dataclass
class _Paper:
    title: str
    arxiv: str = ""


def test_publish_and_index(tmp_path) -> None:
    src = tmp_path / "store" / "report"
    artifacts.write(src / "report.md", render_markdown(_report()))
    artifacts.write(src / "claims.json", claims_json(_report()))
    artifacts.atomic_write_bytes(src / "plot.png", b"\x89PNG fake")
    artifacts.write(src / "summary.parquet", pa.table({"x": [1]}))
    root = tmp_path / "reports"
    path = publish(src, root / "toy", "toy", {"git_commit": "abcdef1234567", "mlflow_parent_run": "run42"},
                   [{"stage": "report", "key": "k", "reused": False, "seconds": 0.5, "outputs": {}}])
    assert path == root / "toy" / "report.md"
    assert path.read_text().rstrip().endswith("| report | `k` | False | 0.50 |  |")
    assert (root / "toy" / "plot.png").read_bytes() == b"\x89PNG fake"
    assert not (root / "toy" / "summary.parquet").exists()  # only the report, figures, claims
    assert "<table>" in (root / "toy" / "report.html").read_text()

    artifacts.write(root / "plain" / "report.md", "# no claims.json here\n")
    papers = {"toy": _Paper("Toy paper", "2401.00001"), "other": _Paper("Other paper"),
              "plain": _Paper("Plain paper")}
    index = render_index(root, papers)
    assert "| `toy` | Toy paper (arXiv:2401.00001) | 1 | 0 | 1 | `abcdef1234`, MLflow `run42` | " \
           "[report](toy/report.md) |" in index
    assert "| `other` | Other paper | - | - | - | not run yet | - |" in index
    assert "| `plain` | Plain paper | ? | ? | ? | `?` | [report](plain/report.md) |" in index
    assert "- **reproduced**: gap <= 1 pt" in index
    md_path = write_index(root, papers)
    assert md_path.read_text() == index
    assert 'href="toy/report.html"' in (root / "index.html").read_text()
