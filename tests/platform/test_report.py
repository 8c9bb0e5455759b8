"""Tests for the report renderer: claims with CIs, HTML, lineage/publish, the index page."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

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
    assert "Verdicts: 1 **reproduced**, 1 **not testable at this scale**" in md
    assert "![Plot](plot.png)" in md
    assert md.index("![Plot](plot.png)") < md.index("## Numbers")  # plots next to the claims, before tables


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


def _stage_output(tmp_path: Path) -> Path:
    src = tmp_path / "store" / "report"
    artifacts.write(src / "report.md", render_markdown(_report()))
    artifacts.write(src / "claims.json", claims_json(_report()))
    artifacts.atomic_write_bytes(src / "plot.png", PNG)
    artifacts.write(src / "summary.parquet", pa.table({"x": [1]}))
    return src


PNG = b"\x89PNG\r\n\x1a\n fake"
STAGES = [{"stage": "report", "key": "k", "reused": False, "seconds": 0.5, "outputs": {}}]
PAPERS = {"toy": _Paper("Toy paper", "2401.00001"), "other": _Paper("Other paper"), "plain": _Paper("Plain paper")}


def _lineage(profile: str = "full", overrides: str = "", date: str = "2026-12-01 10:00 UTC") -> dict:
    return {"git_commit": "abcdef1234567", "mlflow_parent_run": "run42", "profile": profile,
            "overrides": overrides, "published": date}


def test_publish_and_index(tmp_path) -> None:
    src = _stage_output(tmp_path)
    root = tmp_path / "reports"
    path = publish(src, root, "toy", _lineage(), STAGES, PAPERS)
    assert path == root / "toy" / "report.md"
    text = path.read_text()
    assert text.rstrip().endswith("| report | `k` | False | 0.50 |  |")
    # the banner sits right under the title
    assert text.splitlines()[2].startswith("> **Published run: the paper's verdicts** · profile **full** · "
                                           "overrides: none · 2026-12-01 10:00 UTC · commit `abcdef1234`")
    assert (root / "toy" / "plot.png").read_bytes() == PNG
    assert not (root / "toy" / "summary.parquet").exists()  # only the report, figures, claims
    assert "<table>" in (root / "toy" / "report.html").read_text()
    assert not list(root.glob("**/.*.staging")) and not (root / ".publish.json").exists()

    artifacts.write(root / "plain" / "report.md", "# no claims.json here\n")
    index = render_index(root, PAPERS)
    assert "| `toy` | Toy paper (arXiv:2401.00001) | 1 | 0 | 1 | - | full | 2026-12-01 10:00 UTC | " \
           "`abcdef1234`, MLflow `run42` | [report](toy/report.md) |" in index
    assert "| `other` | Other paper | - | - | - | - | - | - | no full run published yet | - |" in index
    # a publication that does not say its profile is never shown as the paper's verdict
    assert "| `plain` | Plain paper | - | - | - | - | - | - | no full run published yet | - |" in index
    assert "| `plain` | ? | none | ? | ? | ? | ? | `?` | [report](plain/report.md) |" in index
    assert "- **reproduced**: gap <= 1 pt" in index
    md_path = write_index(root, PAPERS)
    assert md_path.read_text() == index
    assert 'href="toy/report.html"' in (root / "index.html").read_text()


def test_html_is_self_contained_colour_coded_and_scrolls_tables_in_place(tmp_path) -> None:
    import base64

    artifacts.atomic_write_bytes(tmp_path / "plot.png", PNG)
    md = "# T\n\n> banner: smoke run, not the paper's verdicts\n\n" + render_markdown(_report())
    page = render_html(md, "t", base_dir=tmp_path)
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert 'src="plot.png"' not in page
    assert '<strong class="verdict v-reproduced">reproduced</strong>' in page
    assert '<strong class="verdict v-not-testable">not testable at this scale</strong>' in page
    assert page.count('<div class="scroll"><table>') == page.count("<table>") == 2
    assert '<blockquote class="banner unofficial">' in page
    # without the file the link stays as it is (never a broken data: URI)
    assert 'src="plot.png"' in render_html(md, "t", base_dir=tmp_path / "nowhere")


def test_smoke_and_override_runs_never_replace_the_published_verdicts(tmp_path) -> None:
    src = _stage_output(tmp_path)
    root = tmp_path / "reports"
    publish(src, root, "toy", _lineage(date="2026-12-01 10:00 UTC"), STAGES, PAPERS)
    smoke = publish(src, root, "toy", _lineage("smoke", date="2026-12-02 10:00 UTC"), STAGES, PAPERS)
    over = publish(src, root, "toy", _lineage("full", '{"prune": {"patterns": ["2:4"]}}', "2026-12-03 10:00 UTC"),
                   STAGES, PAPERS)
    assert smoke == root / "toy" / "runs" / "smoke" / "report.md"
    assert over.parent.parent == root / "toy" / "runs" and over.parent.name.startswith("full-overrides-")
    assert "2026-12-01" in (root / "toy" / "report.md").read_text()  # the published run is untouched
    assert "**Smoke run: not the paper's verdicts**" in smoke.read_text()
    assert "overrides: `{\"prune\"" in over.read_text()
    index = (root / "index.md").read_text()
    main, others = index.split("## Other runs", 1)
    assert "| full | 2026-12-01 10:00 UTC |" in main and "smoke" not in main and "2026-12-03" not in main
    assert "| `toy` | smoke | none | 2026-12-02 10:00 UTC | 1 | 0 | 1 |" in others
    assert "[report](toy/runs/smoke/report.md)" in others and '`{"prune": {"patterns": ["2:4"]}}`' in others
    # republishing the full run keeps the other runs' folders; a new smoke run replaces the old one
    publish(src, root, "toy", _lineage(date="2026-12-04 10:00 UTC"), STAGES, PAPERS)
    publish(src, root, "toy", _lineage("smoke", date="2026-12-05 10:00 UTC"), STAGES, PAPERS)
    assert smoke.is_file() and over.is_file()
    main, others = (root / "index.md").read_text().split("## Other runs")
    assert "2026-12-04" in main
    assert others.count("| `toy` | smoke |") == 1 and "2026-12-05" in others


def test_a_smoke_report_published_by_older_code_is_not_shown_as_the_verdict(tmp_path) -> None:
    root = tmp_path / "reports"
    artifacts.write(root / "toy" / "report.md", "# old\n")
    artifacts.write(root / "toy" / "lineage.json", {"lineage": _lineage("smoke"), "stages": []})
    main, others = render_index(root, PAPERS).split("## Other runs", 1)
    assert "| `toy` | Toy paper (arXiv:2401.00001) | - | - | - | - | - | - | no full run published yet | - |" in main
    assert "| `toy` | smoke |" in others


def _kill_publish_at(k: int, src: Path, root: Path) -> int:
    """Fork a publisher that SIGKILLs itself at its k-th rename/replace; return its wait status."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            calls = [0]
            real_rename, real_replace = os.rename, os.replace

            def counting(real):
                def f(*a, **kw):
                    if calls[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    calls[0] += 1
                    return real(*a, **kw)
                return f

            os.rename, os.replace = counting(real_rename), counting(real_replace)
            publish(src, root, "toy", _lineage(date="2026-12-09 09:09 UTC"), STAGES, PAPERS)
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def test_a_kill_at_any_step_of_publishing_leaves_report_and_index_whole(tmp_path) -> None:
    src = _stage_output(tmp_path)
    killed_steps = 0
    for k in range(100):
        root = tmp_path / f"reports{k}"
        publish(src, root, "toy", _lineage(date="2026-12-01 10:00 UTC"), STAGES, PAPERS)
        status = _kill_publish_at(k, src, root)
        if os.WIFEXITED(status):  # k is past the last rename: publishing completed
            assert "2026-12-09" in (root / "index.md").read_text()
            break
        killed_steps += 1
        published = root / "toy"
        # what a reader sees right after the kill: one whole publication (md and html agree)
        md, page = (published / "report.md").read_text(), (published / "report.html").read_text()
        date = "2026-12-09" if "2026-12-09" in md else "2026-12-01"
        assert date in page and (published / "plot.png").is_file()
        # the next publisher (or index rebuild) completes what the journal promised
        write_index(root, PAPERS)
        md = (published / "report.md").read_text()
        index = (root / "index.md").read_text()
        assert ("2026-12-09" in md) == ("2026-12-09" in index)
        assert ("2026-12-09" in (published / "report.html").read_text()) == ("2026-12-09" in md)
        assert not (root / ".publish.json").exists() and not list(root.glob("**/.*.staging"))
        assert not list(root.glob("**/.*.old"))
    assert killed_steps >= 8, killed_steps  # every file write, the exchange and the index writes
