"""Page 1 answers the team's questions (PDF, HTML first screen, Slack digest), the research log
is written in one language, and the charts can be read (issue 15).

Runs are synthetic (tests/synthetic_run.py writes them through the real writers): a
nightly-style sweep of 5-60 s without failures, and a baseline night that was 15 % faster.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchrunner.report import chartdata, charts, fmt
from benchrunner.report.writer import write_reports
from conftest import bench_env
from synthetic_run import make_synthetic_run
from test_report import need

NIGHT_CLIPS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
BUDGETS = {"p50_latency_ms": {"limit": 9000, "clip_s": 60}, "peak_memory_gb": 60, "failure_rate": 0.0}
QUESTIONS = ("Hybrid vs chunked", "Best threshold", "Budgets", "Failures", "Against the baseline night", "Validity")


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("nights")
    base = make_synthetic_run(root / "a", repeats=10, run_id="20250228-020000-night", clips=NIGHT_CLIPS,
                              failures=False, budgets=BUDGETS)
    run = make_synthetic_run(root / "b", repeats=10, run_id="20250301-020000-night", clips=NIGHT_CLIPS, seed=3,
                             failures=False, slowdown=1.15, budgets=BUDGETS)
    return base, run


@pytest.fixture(scope="module")
def single(nights, tmp_path_factory):
    return write_reports(nights[1], out=tmp_path_factory.mktemp("single") / "any" / "where")


@pytest.fixture(scope="module")
def against(nights, tmp_path_factory):
    return write_reports(nights[1], against=nights[0], out=tmp_path_factory.mktemp("against"), research_log="en")


def pdf_text(path: Path, first: int, last: int) -> str:
    pdftotext = need("pdftotext", "poppler-utils")
    return subprocess.run([pdftotext, "-f", str(first), "-l", str(last), str(path), "-"], capture_output=True,
                          text=True, check=True).stdout


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_page_one_answers_every_question_for_a_single_run(single):
    page = _flat(pdf_text(single.out_dir / "report.pdf", 1, 1))
    for question in QUESTIONS:
        assert question in page, question
    answers = {v.topic: v.text for v in single.model.verdicts}
    # hybrid against chunked, with the size of the difference and its CI, hyperfine-style
    assert re.search(r"hybrid@\d+ vs chunked: .*\d\.\d\d× (faster|slower) at \d+ s \(95% CI \d\.\d\d-\d\.\d\d\)",
                     answers["Hybrid vs chunked"])
    assert "same path as chunked at 45-60 s" in answers["Hybrid vs chunked"]
    # the best threshold, and the ones the data cannot separate from it, with the reason
    best = answers["Best threshold"]
    assert re.match(r"(30|32|35) s \(fastest eligible", best)
    assert "cannot be told apart from it: no swept clip length lies between 30 and 35 s" in best
    assert re.search(r"28 s: \d\.\d\d× slower at 30 s \(95% CI", best)
    assert answers["Failures"] == "none: 0/360 repeats failed"
    assert answers["Against the baseline night"].startswith("no baseline run given")
    for sentence in answers.values():  # pdftotext wraps lines: compare without whitespace
        assert re.sub(r"\s", "", sentence)[:60] in re.sub(r"\s", "", page)
    for key in ("pipeline_args", "Chunk", "Timer", "Memory source", "Util source", "Pipeline commit",
                "benchrunner commit", "Command line"):
        assert key in page, key


def test_page_one_against_the_baseline_names_what_got_slower(against):
    page = _flat(pdf_text(against.out_dir / "report.pdf", 1, 1))
    answer = next(v for v in against.model.verdicts if v.topic == "Against the baseline night")
    assert answer.tone == "bad"
    assert answer.text.startswith("against 20250228-020000-night: slower at 36 of 36 cases, largest: ")
    assert re.search(r"\d\.\d\d× slower \(95% CI 1\.\d\d-1\.\d\d\)", answer.text)
    assert "latency geometric mean ×1.1" in answer.text and ": slower)" in answer.text
    assert "slower at" in page and "Against the baseline night" in page
    # the mode comparisons stay in a report against another run, next to run against run
    assert against.model.section("compare").blocks
    keys = [b.key for b in against.model.section("runs").blocks]
    assert keys == ["matrix:latency", "matrix:memory", "matrix:failure"]


def test_html_first_screen_is_the_answers(single, against):
    for report in (single, against):
        html = (report.out_dir / "report.html").read_text(encoding="utf-8")
        answers_at = html.index('id="table-answers"')
        assert answers_at < html.index('id="table-configuration"') < html.index("<svg")
        first_screen = html[:html.index('id="table-configuration"')]
        for v in report.model.verdicts:
            assert v.text.replace("&", "&amp;") in first_screen or v.text in first_screen


def test_same_run_gives_same_answers_file(single, nights, tmp_path):
    again = write_reports(nights[1], out=tmp_path, formats=("pdf",), research_log=None)
    assert (again.out_dir / "answers.json").read_bytes() == (single.out_dir / "answers.json").read_bytes()


def test_bench_post_dry_run_shows_the_answers_first(against, nights, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(against.out_dir, reports / nights[1].name)
    done = subprocess.run([sys.executable, "-m", "benchrunner", "post", str(nights[1]), "--channel", "C1",
                           "--dry-run", "--reports", str(reports)], capture_output=True, text=True, timeout=180,
                          env=bench_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    blocks = payload["chat.postMessage"]["blocks"]
    header = blocks[0]["text"]["text"]
    words = header.lower().replace(":", " ").split()
    assert len(words) == len(set(words)), header  # no "nightly nightly"
    first = blocks[1]["text"]["text"]
    for question in QUESTIONS:
        assert f"*{question}*" in first, question
    assert "slower at" in first and "95% CI" in first
    assert blocks[2]["text"]["text"].startswith((":rotating_light:", ":white_check_mark:"))


def test_memory_chart_of_a_cpu_run_keeps_the_lines_off_zero(tmp_path):
    """A CPU run peaks near 0.2 GiB; a 60 GB budget must not flatten it onto the axis."""
    run = make_synthetic_run(tmp_path, repeats=3, clips=(5.0, 30.0), failures=False, memory_scale=0.005,
                             budgets={"peak_memory_gb": 60})
    from benchrunner.report.sections import build_model

    chart = next(b for b in build_model(run).section("memory").blocks if b.key == "memory")
    axis = chart.data["axis"]
    assert axis["scale"] == "linear" and axis["budget_on_scale"] is False
    peaks = [v for s in chart.data["series"] for v in s["peak"]]
    assert chart.data["unit"] == "GiB" and axis["ylim"][1] < 1.0
    assert min(peaks) > 0.5 * axis["ylim"][1]  # the lines sit in the upper half, far from zero
    assert "off scale" in chart.caption and "60 GiB" in chart.caption
    fig = charts.figure(chart)
    ax = fig.axes[0]
    assert ax.get_ylim()[1] < 1.0
    assert any("budget 60 GiB (off scale)" in t.get_text() for t in ax.texts)
    # with a budget near the data, the budget is a line on a linear axis
    near = chartdata.memory_axis([30.0, 40.0], 60.0)
    assert near["budget_on_scale"] and near["ylim"][1] >= 60.0
    assert chartdata.memory_axis([0.1, 40.0], None)["scale"] == "log"


def test_timeline_breaks_at_gaps_and_modes_differ_in_colour_marker_and_line():
    t, v = chartdata.with_gaps([0.0, 0.1, 0.2, 0.3, 2.0, 2.1, 2.2], [1, 2, 3, 4, 5, 6, 7])
    assert t == [0.0, 0.1, 0.2, 0.3, None, 2.0, 2.1, 2.2] and v[4] is None
    styles = [charts.mode_style(i) for i in range(8)]
    for key in ("color", "marker", "ls"):
        assert len({str(s[key]) for s in styles}) == 8, key


def test_pdf_charts_are_vector_and_no_failure_night_fits_eight_pages(single):
    pdf = single.out_dir / "report.pdf"
    pdfimages = need("pdfimages", "poppler-utils")
    listed = subprocess.run([pdfimages, "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert len(listed.strip().splitlines()) == 2, listed  # the header lines only: no raster image
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run([need("pdfinfo", "poppler-utils"), str(pdf)],
                                                             capture_output=True, text=True).stdout).group(1))
    first_appendix = next(p for p in range(1, pages + 1) if "Appendix · 부록" in pdf_text(pdf, p, p))
    assert first_appendix - 1 <= 8, first_appendix
    assert not [b for b in single.model.section("failures").blocks]  # no heatmap without failures
    assert single.model.section("failures").paragraphs[0].startswith("No failures")


HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")
UNITS = {"s", "ms", "min", "GiB", "MiB", "dB", "UTC", "p50", "p90", "p99", "k", "n", "CPU", "GPU", "CUDA",
         "torch", "SNR", "PDF", "ID", "SM", "x"}


def _latin_words(text: str, names: set[str]) -> list[str]:
    """Latin words left once code spans, file names, identifiers, names and units are removed."""
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"<[^>]+>", " ", text)  # HTML tags and their attributes
    text = re.sub(r"&[a-z]+;|&#\d+;", " ", text)
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, " ")
    tokens = re.findall(r"[A-Za-z][A-Za-z0-9_./:@=-]*", text)
    return [t for t in tokens if t not in UNITS and not re.search(r"[_./:@=]|\d", t)]


def test_korean_research_log_has_no_english_sentence(tmp_path):
    run = make_synthetic_run(tmp_path / "runs", repeats=10)  # with failures and validity warnings
    out = write_reports(run, out=tmp_path / "deep" / "out", formats=("pdf",), research_log="ko")
    model = out.model
    names = {model.suite, model.run_id, *model.modes, "single", "chunked", "hybrid", "NVIDIA A100-SXM4-80GB",
             "AMD EPYC 7763 64-Core Processor", "benchrunner", "default", *(str(v) for v in model.config.values())}
    for name in ("research_log.ko.md", "research_log.ko.html"):
        text = (out.out_dir / name).read_text(encoding="utf-8")
        english = _latin_words(text, names)
        assert not english, (name, english[:20])
        assert len(HANGUL.findall(text)) > 300
    md = (out.out_dir / "research_log.ko.md").read_text(encoding="utf-8")
    assert "최적 임계값" in md and "하이브리드 대 청크" in md  # the threshold and the mode comparison
    assert "(report.pdf)" in md and (out.out_dir / "report.pdf").is_file()  # the link works from the log's folder


def test_english_research_log_has_no_korean(against):
    for name in ("research_log.en.md", "research_log.en.html"):
        text = (against.out_dir / name).read_text(encoding="utf-8")
        assert not HANGUL.findall(text), HANGUL.findall(text)[:10]
        assert "Best threshold" in text and "Hybrid vs chunked" in text


def test_every_warning_code_has_korean_text():
    """The Korean log translates warnings by id: a new ValidityWarning code needs an entry."""
    from benchrunner.report.messages import WARNINGS_KO

    root = Path(__file__).resolve().parents[1] / "benchrunner"
    source = "\n".join(p.read_text(encoding="utf-8") for p in root.rglob("*.py"))
    codes = set(re.findall(r'ValidityWarning\(\s*"([a-z_0-9]+)"', source))
    assert len(codes) >= 10 and not codes - set(WARNINGS_KO), sorted(codes - set(WARNINGS_KO))
