"""bench report's optional sections: the profile summary (profiles stored in the run folder by
`bench profile --run`) and the trend of the last nights (the history store bench nightly fills).

Profiles are written by the real profiling code (analyse, write_profile, compare_analyses,
write_comparison) from hand-written traces; the history is real SQLite, filled with
record_run from run folders written through RunFiles. Nothing here needs torch or a GPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchrunner.profiling.analysis import IO_WAIT, analyse
from benchrunner.profiling.compare import compare_analyses
from benchrunner.profiling.store import PROFILES_DIR, case_dir, write_comparison, write_profile
from benchrunner.report.sections import build_model
from benchrunner.report.writer import write_reports
from benchrunner.store.history import open_history
from benchrunner.store.results import RunFiles, read_manifest, read_summary
from conftest import bench_env
from synthetic_run import STAGES, make_synthetic_run
from test_report import html_tables, md_table, need

STEP_CASE = "default/chunked/30s"  # +15 % from night 6 of 10; every other case stays level
NIGHTS = 10


# --- profiles: hand-written traces through the real analysis and store -------------------------

def _x(name, cat, ts, dur, tid=1):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "pid": 1, "tid": tid, "args": {}}


def _trace(mode: str, stage_us: dict[str, float], repeats: int = 2) -> dict:
    """``repeats`` profiled steps: an io_wait, then each stage with one op busy for 80 % of it."""
    events, t = [], 0.0
    for step in range(repeats):
        start = t
        events.append(_x(IO_WAIT, "user_annotation", t, 50))
        t += 60
        for stage, dur in stage_us.items():
            events.append(_x(f"{mode}/{stage}", "user_annotation", t, dur))
            events.append(_x(f"aten::op_{stage}", "cpu_op", t + 0.1 * dur, 0.8 * dur))
            t += dur
        events.append(_x(f"ProfilerStep#{step + 2}", "user_annotation", start, t - start))
        t += 10
    return {"traceEvents": events}


def add_profiles(run_dir: Path, clip_s: float = 30.0) -> None:
    """chunked and single at ``clip_s``, profiled and compared as `bench profile --compare chunked single`."""
    base = run_dir / PROFILES_DIR
    analyses = {}
    for mode, scale in (("chunked", 1.0), ("single", 2.5)):
        stage_us = {stage: 1000.0 * scale * (i + 1) for i, stage in enumerate(STAGES)}
        analysis = analyse(_trace(mode, stage_us), {f"{mode}/{s}": s for s in STAGES}, list(STAGES), "cpu")
        case = SimpleNamespace(case_id=f"default/{mode}/{clip_s:g}s", suite="synthetic", variant="default",
                               pipeline="benchrunner.pipelines.reference:build", mode=SimpleNamespace(label=mode),
                               clip_s=clip_s, device="cpu")
        folder = case_dir(base, case)
        folder.mkdir(parents=True)
        write_profile(folder, case, analysis, {"wait": 1, "warmup": 1, "active": 2}, list(STAGES))
        analyses[mode] = analysis
    write_comparison(base, compare_analyses("chunked", analyses["chunked"], "single", analyses["single"]))


# --- history: nights before the synthetic run, recorded with record_run ------------------------

def make_history(run_dir: Path, results: Path, db_url: str) -> list[Path]:
    """NIGHTS - 1 nights before ``run_dir`` (the last night), all recorded in ``db_url``. Each
    night is the run's summary with 1 % noise; STEP_CASE is 15 % faster before night 6."""
    manifest, summary = read_manifest(run_dir), read_summary(run_dir)
    started = datetime.fromisoformat(manifest["started_at"])
    rng = np.random.default_rng(3)
    folders = []
    for night in range(1, NIGHTS):
        when = started - timedelta(days=NIGHTS - night)
        run_id = f"{when:%Y%m%d-%H%M%S}-{manifest['suite']['name']}"
        files = RunFiles(results / run_id)
        files.dir.mkdir(parents=True)
        frame = summary.copy()
        frame["run_id"] = run_id
        factor = 1 + rng.normal(0, 0.01, len(frame))
        factor[(frame["case_id"] == STEP_CASE).to_numpy()] /= 1.15 if night < 6 else 1.0
        frame["latency_p50_ms"] = frame["latency_p50_ms"] * factor
        files.write_summary(frame)
        for name in ("samples.csv", "timeline.csv"):
            shutil.copy(run_dir / name, files.dir / name)
        files.write_manifest({**manifest, "run_id": run_id, "started_at": when.isoformat(),
                              "ended_at": (when + timedelta(hours=3)).isoformat()})
        folders.append(files.dir)
    with open_history(db_url) as history:
        for folder in [*folders, run_dir]:
            history.record_run(folder)
    return folders


@pytest.fixture(scope="module")
def extras(tmp_path_factory):
    """A synthetic run with two profiles and a comparison, and 10 nights of its suite in a store."""
    root = tmp_path_factory.mktemp("extras")
    run_dir = make_synthetic_run(root / "results", repeats=3)
    add_profiles(run_dir)
    db_url = f"sqlite:///{root / 'db' / 'history.db'}"
    make_history(run_dir, root / "history", db_url)
    out = write_reports(run_dir, out=root / "report", formats=("pdf", "html", "md"), research_log=None,
                        db_url=db_url)
    return SimpleNamespace(run_dir=run_dir, db_url=db_url, report=out, root=root)


def _pages(extras) -> tuple[str, str]:
    return ((extras.report.out_dir / "report.html").read_text(encoding="utf-8"),
            (extras.report.out_dir / "report.md").read_text(encoding="utf-8"))


# --- the profile section ------------------------------------------------------------------------

def test_profile_section_names_every_stage_in_html_and_markdown(extras):
    html, md = _pages(extras)
    assert '<section id="profile">' in html and "## Profile summary" in md
    tables = html_tables(extras.report.out_dir / "report.html")
    for name in ("profile-chunked-30s", "profile-single-30s"):
        stages = [row[0] for row in tables[f"table-{name}"][1:]]
        assert stages == [*STAGES, IO_WAIT, "other", "total"], stages
    profile_md = md[md.index("## Profile summary"):]
    for stage in STAGES:
        assert stage.replace("_", r"\_") in profile_md, stage
        assert f"aten::op\\_{stage.replace('_', chr(92) + '_')}" in profile_md, stage
    assert "On the CPU, busy is host-side: a torch op was executing on the main thread" in html
    assert "svg" in html[html.index('<section id="profile">'):html.index('<section id="appendix">')]


def test_profile_numbers_come_from_summary_json(extras):
    summary = json.loads((extras.run_dir / PROFILES_DIR / "single-30s" / "summary.json").read_text())
    rows = html_tables(extras.report.out_dir / "report.html")["table-profile-single-30s"]
    header, body = rows[0], {row[0]: row for row in rows[1:]}
    acoustic = next(r for r in summary["regions"] if r["region"] == "acoustic")
    assert body["acoustic"][header.index("Busy %")] == f"{acoustic['busy_pct']:.1f}" == "80.0"
    assert body["acoustic"][header.index("Wall ms")] == f"{acoustic['wall_ms']:.2f}"
    assert body["total"][header.index("Busy %")] == f"{summary['busy_pct']:.1f}"
    assert body["acoustic"][-1].startswith("aten::op_acoustic ")


def test_profile_comparison_is_side_by_side(extras):
    html, md = _pages(extras)
    assert "chunked against single at 30 s" in html
    compare = html_tables(extras.report.out_dir / "report.html")["table-profile-compare"]
    assert compare[0][:3] == ["Stage", "chunked busy %", "single busy %"]
    assert [row[0] for row in compare[1:]] == [*STAGES, IO_WAIT, "other", "total"]
    assert compare == md_table(md, "chunked against single at 30 s")


def test_no_profiles_no_profile_section(extras, tmp_path):
    plain = make_synthetic_run(tmp_path, repeats=2)
    model = build_model(plain, db_url=f"sqlite:///{tmp_path / 'none.db'}")
    assert "profile" not in [s.key for s in model.sections]


# --- the trend section --------------------------------------------------------------------------

def test_trend_section_flags_the_step_at_night_6(extras):
    section = extras.report.model.section("trend")
    assert section.title == "Trend of the last 10 nights"
    lead = section.paragraphs[0]
    assert f"14 were asked for, the store has {NIGHTS}" in lead and f"This run is night {NIGHTS}." in lead
    changes = html_tables(extras.report.out_dir / "report.html")["table-trend-changes"]
    header, body = changes[0], changes[1:]
    assert [(row[0], row[1], row[-1]) for row in body] == [(STEP_CASE, "6", "regression")]
    change = float(body[0][header.index("Change")].rstrip(" %"))
    assert change == pytest.approx(15, abs=3)
    html, md = _pages(extras)
    assert '<section id="trend">' in html and 'class="bad">regression</td>' in html
    assert md_table(md, "## Trend of the last 10 nights")[1][0] == STEP_CASE
    chart = next(b for b in section.blocks if getattr(b, "key", "") == "trend")
    assert len(chart.data["dates"]) == NIGHTS and chart.data["this_night"] == NIGHTS
    chunked = next(p for p in chart.data["panels"] if p["label"] == "chunked")
    assert chunked["changes"] == [{"night": 6, "value": pytest.approx(chunked["lines"][3]["values"][5]),
                                   "regression": True}]


def test_trend_nights_limits_the_window_and_ends_at_the_run(extras):
    model = build_model(extras.run_dir, db_url=extras.db_url, trend_nights=4)
    chart = next(b for b in model.section("trend").blocks if getattr(b, "key", "") == "trend")
    assert model.section("trend").title == "Trend of the last 4 nights" and len(chart.data["dates"]) == 4
    earlier = sorted(p for p in (extras.root / "history").iterdir())[3]  # night 4: nights 1-4 only
    model = build_model(earlier, db_url=extras.db_url)
    assert "This run is night 4." in model.section("trend").paragraphs[0]


def test_without_a_store_no_trend_section_and_no_database_created(extras, tmp_path):
    missing = tmp_path / "nowhere" / "history.db"
    out = write_reports(extras.run_dir, out=tmp_path / "out", formats=("html", "md"), research_log=None,
                        db_url=f"sqlite:///{missing}")
    assert "trend" not in [s.key for s in out.model.sections]
    assert not missing.exists() and not missing.parent.exists()
    html = (out.out_dir / "report.html").read_text(encoding="utf-8")
    md = (out.out_dir / "report.md").read_text(encoding="utf-8")
    assert 'id="trend"' not in html and "## Trend" not in md
    note = "Trend of the last 14 nights not shown: no history database at"
    assert note in html and note in md and len(out.model.omitted) == 1


def test_cli_report_never_creates_the_default_store(extras, tmp_path):
    env = {k: v for k, v in bench_env().items() if k != "BENCH_DB_URL"}
    done = subprocess.run([sys.executable, "-m", "benchrunner", "report", str(extras.run_dir), "--md", "--out", "out"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "results").exists()
    assert "not shown: no history database at sqlite:///results/history.db" in (tmp_path / "out" / "report.md"
                                                                                  ).read_text(encoding="utf-8")
    given = subprocess.run([sys.executable, "-m", "benchrunner", "report", str(extras.run_dir), "--md", "--out", "out",
                            "--db", extras.db_url, "--trend-nights", "0"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert given.returncode == 2 and "--trend-nights: 0 is not a number of nights" in given.stderr


def test_report_with_extras_is_byte_identical_and_imports_no_torch(extras, tmp_path):
    code = (f"import sys; from benchrunner.report.writer import write_reports; "
            f"write_reports({str(extras.run_dir)!r}, out={str(tmp_path)!r}, formats=('pdf', 'html', 'md'), "
            f"research_log=None, db_url={extras.db_url!r}); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=bench_env())
    assert done.returncode == 0, done.stderr
    for name in ("report.pdf", "report.html", "report.md"):
        assert (tmp_path / name).read_bytes() == (extras.report.out_dir / name).read_bytes(), name


def test_pdf_has_both_sections(extras):
    pdftotext = need("pdftotext", "poppler-utils")
    text = subprocess.run([pdftotext, "-layout", str(extras.report.out_dir / "report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Trend of the last 10 nights" in text and "Profile summary" in text
    assert "host-side" in text and STEP_CASE in text


# --- run against run: the night-to-night noise from the store, as bench nightly judges --------

def _noisy_nights(run_dir: Path, results: Path, db_url: str, nights: int, spread: float) -> None:
    """``nights`` nights before ``run_dir`` whose summaries move by ``spread`` (log sd) night to
    night, recorded with the run itself."""
    manifest, summary = read_manifest(run_dir), read_summary(run_dir)
    started = datetime.fromisoformat(manifest["started_at"])
    rng = np.random.default_rng(11)
    folders = []
    for night in range(nights):
        when = started - timedelta(days=nights - night)
        files = RunFiles(results / f"{when:%Y%m%d-%H%M%S}-{manifest['suite']['name']}")
        files.dir.mkdir(parents=True)
        files.write_summary(summary.assign(run_id=files.dir.name,
                                           latency_p50_ms=summary["latency_p50_ms"] * rng.lognormal(0, spread)))
        files.write_manifest({**manifest, "run_id": files.dir.name, "started_at": when.isoformat()})
        folders.append(files.dir)
    with open_history(db_url) as history:
        for folder in [*folders, run_dir]:
            history.record_run(folder)


def _latency_against(run: Path, base: Path, db_url: str, *, text: bool):
    """The report's latency comparison of run against base, as assemble() builds it, and (with
    ``text``) the paragraphs of every section of the model."""
    from benchrunner.report import analysis, trend
    from benchrunner.report.model import load_run

    view, base_view = load_run(run), load_run(base)
    noise = trend.night_noise(view, db_url, analysis.RUN_METRICS)
    latency = analysis.run_outcomes(view, base_view, noise)[0].value
    if not text:
        return latency, ""
    model = build_model(run, against=base, db_url=db_url)
    return latency, "\n".join(p for section in model.sections for p in section.paragraphs)


def test_the_report_judges_run_against_run_with_the_stores_night_to_night_noise(tmp_path):
    base = make_synthetic_run(tmp_path / "results", run_id="20250228-020000-synthetic", seed=5, failures=False)
    run = make_synthetic_run(tmp_path / "results", seed=6, slowdown=1.06, failures=False)
    fixed, _ = _latency_against(run, base, f"sqlite:///{tmp_path / 'none.db'}", text=False)
    assert any(r.verdict == "slower" for r in fixed.rows)  # 6 % slower: over the fixed 2 % minimum effect
    assert not any(r.noise_nights for r in fixed.rows)

    db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _noisy_nights(run, tmp_path / "nights", db_url, nights=9, spread=0.10)
    noisy, text = _latency_against(run, base, db_url, text=True)
    assert all(r.verdict == "no significant change" for r in noisy.rows), [(r.clip_s, r.verdict) for r in noisy.rows]
    assert all(r.noise_nights and r.min_effect > 0.06 for r in noisy.rows)
    assert "within the usual night-to-night noise" in text
