"""bench report: PDF, HTML, Markdown and research log rendered from one run's files.

The content tests read real run folders (tests/synthetic_run.py writes one through the real
writers; one test makes a real quick run) and need only Python. The checks that need
poppler (pdftotext, pdftoppm) or Chromium skip, saying which package is missing.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchrunner.report import fmt
from benchrunner.report.writer import write_reports
from benchrunner.store.results import read_summary
from conftest import REPO, bench_env
from synthetic_run import CLIPS, MODES, make_synthetic_run

OUTPUTS = ("report.pdf", "report.html", "report.md", "answers.json", "research_log.ko.md", "research_log.ko.html")
KOREAN_HEADINGS = ("케이스별 결과", "클립 길이별 지연 시간", "실패 현황", "부록")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (apt-get install {package})")
    return path


class _Tables(HTMLParser):
    """Every <table id=...> of a page as a list of rows of cell texts (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._current: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._current = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._current is not None:
            self._current.append([])
        elif tag in ("td", "th") and self._current is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._current[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._current = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(path: Path) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tables


def md_table(text: str, heading: str) -> list[list[str]]:
    """The first Markdown table after a heading, unescaped, header row first."""
    block = text[text.index(heading):]
    rows = []
    for line in block.splitlines()[1:]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
                rows.append([re.sub(r"\\(.)", r"\1", c.strip()).strip("*") for c in cells])
        elif rows:
            break
    return rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_synthetic_run(tmp_path_factory.mktemp("runs"), repeats=10)


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    return write_reports(run_dir, out=tmp_path_factory.mktemp("report"))


def _totals(run_dir: Path):
    summary = read_summary(run_dir)
    totals = summary[summary["stage"] == "total"]
    return {(fmt.mode_label(r.mode, r.threshold_s), float(r.clip_s)): r for r in totals.itertuples()}


def _close(cell: str, value) -> bool:
    """The cell is the summary value rounded to the cell's own number of decimals."""
    decimals = len(cell.split(".")[1]) if "." in cell else 0
    return math.isclose(float(cell), float(value), abs_tol=0.5 * 10 ** -decimals + 1e-9)


def test_every_output_is_written(report):
    assert sorted(p.name for p in report.paths) == sorted(OUTPUTS)
    assert all(p.stat().st_size > 0 for p in report.paths)


def test_case_table_numbers_equal_summary_csv(report, run_dir):
    totals = _totals(run_dir)
    rows = md_table((report.out_dir / "report.md").read_text(encoding="utf-8"), "## Results per case")
    header, body = rows[0], rows[1:]
    col = {name: header.index(name) for name in ("Mode", "Clip (s)", "n ok", "p10 ms", "p50 ms", "p90 ms",
                                                 "Peak mem GiB", "Failures")}
    assert len(body) == len(totals) == len(MODES) * len(CLIPS)
    for row in body:
        case = totals[(row[col["Mode"]], float(row[col["Clip (s)"]]))]
        assert row[col["n ok"]] == str(case.n)
        assert row[col["Failures"]] == f"{case.failures}/{case.n_total}"
        assert _close(row[col["Peak mem GiB"]], case.peak_mem_bytes / 2**30)
        for name, value in (("p10 ms", case.latency_p10_ms), ("p50 ms", case.latency_p50_ms),
                            ("p90 ms", case.latency_p90_ms)):
            if case.n == 0:
                assert row[col[name]] == "n/a (0 ok)"
            elif math.isnan(value):
                assert row[col[name]] == "n/a (n<10)"
            else:
                assert _close(row[col[name]], value), (row, name, value)


def test_html_and_markdown_tables_agree(report):
    html = html_tables(report.out_dir / "report.html")
    md = (report.out_dir / "report.md").read_text(encoding="utf-8")
    assert html["table-cases"] == md_table(md, "## Results per case")
    assert html["table-stages"] == md_table(md, "## Per-stage medians")


def test_p99_without_enough_samples_says_why(report):
    cases = html_tables(report.out_dir / "report.html")["table-cases"]
    p99 = cases[0].index("p99 ms")
    assert {row[p99] for row in cases[1:]} <= {"n/a (n<100)", "n/a (0 ok)"}


def test_utilisation_is_labelled_by_its_source(report):
    header = html_tables(report.out_dir / "report.html")["table-cases"][0]
    assert "Util % (SM activity)" in header


def test_failing_cases_appear_in_the_failure_table(report, run_dir):
    failures = html_tables(report.out_dir / "report.html")["table-failures"]
    by_case = {row[0]: row for row in failures[1:]}
    failing = {r.case_id: r for r in _totals(run_dir).values() if r.failures}
    assert set(by_case) == set(failing)
    oom = by_case["default/single/60s"]
    assert oom[1] == "10/10" and oom[failures[0].index("oom")] == "10"
    assert "CUDA out of memory" in oom[-1]
    assert by_case["default/chunked/120s"][failures[0].index("timeout")] == "1"


def test_verdicts_on_the_first_page_name_budgets_and_failures(report, run_dir):
    verdicts = {v.topic: v for v in report.model.verdicts}
    assert verdicts["Budgets"].tone == "bad" and "peak_memory_gb" in verdicts["Budgets"].text
    totals = _totals(run_dir).values()
    failed, runs = sum(r.failures for r in totals), sum(r.n_total for r in totals)
    assert verdicts["Failures"].text.startswith(f"{failed}/{runs} repeats failed")


def test_threshold_sweep_recommends_a_threshold(report):
    sweep = html_tables(report.out_dir / "report.html")["table-sweep"]
    assert [row[0].split()[0] for row in sweep[1:]] == ["28", "30", "32", "35"]
    assert any("(recommended)" in row[0] for row in sweep[1:])


def test_outputs_are_byte_identical_for_the_same_run(report, run_dir, tmp_path):
    write_reports(run_dir, out=tmp_path)
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (report.out_dir / name).read_bytes(), name


def test_suite_name_with_markup_is_text_everywhere(tmp_path):
    run = make_synthetic_run(tmp_path / "runs", suite='<script>alert("x")</script> 야간', repeats=2)
    out = write_reports(run, out=tmp_path / "out", formats=("html", "md"))
    html = (out.out_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; 야간" in html
    assert "<script" not in (out.out_dir / "research_log.ko.html").read_text(encoding="utf-8")
    assert r"\<script\>" in (out.out_dir / "report.md").read_text(encoding="utf-8")


def test_research_log_uses_prose_file_and_run_figures(run_dir, tmp_path):
    prose = tmp_path / "log.toml"
    prose.write_text('author = "홍길동"\nkeywords = ["하이브리드", "청크"]\n'
                     'next_steps = ["임계값 30-35 s 사이 추가 측정"]\n', encoding="utf-8")
    out = write_reports(run_dir, out=tmp_path / "out", formats=(), research_log="ko", prose=prose)
    md = (out.out_dir / "research_log.ko.md").read_text(encoding="utf-8")
    for text in ("홍길동", "하이브리드, 청크", "임계값 30-35 s 사이 추가 측정", "### 1. 배경 및 목표",
                 "### 3. 결과 및 정량 지표", "### 4. 문제점 및 대응", "(미기재)", "default/single/60s: 10/10"):
        assert text in md, text
    fragment = (out.out_dir / "research_log.ko.html").read_text(encoding="utf-8")
    assert fragment.startswith("<div") and "<html" not in fragment and "홍길동" in fragment
    single = [r for r in _totals(run_dir).values() if r.mode == "single"]
    headline = md_table(md, "### 3.")
    assert headline[1][0] == "single"
    assert headline[1][-1] == f"{sum(r.failures for r in single)}/{sum(r.n_total for r in single)}"


def test_research_log_in_english(run_dir, tmp_path):
    out = write_reports(run_dir, out=tmp_path, formats=(), research_log="en")
    md = (tmp_path / "research_log.en.md").read_text(encoding="utf-8")
    assert "### 2. Work done" in md and "(not set)" in md
    assert [p.name for p in out.paths] == ["research_log.en.md", "research_log.en.html"]


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchrunner", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=bench_env())


def test_cli_bad_input_is_one_line_and_exit_2(run_dir, tmp_path):
    missing = _bench("report", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("bench: error: ")
    assert len(missing.stderr.strip().splitlines()) == 1
    prose = tmp_path / "bad.toml"
    prose.write_text("autor = 'typo'\n", encoding="utf-8")
    bad = _bench("report", str(run_dir), "--md", "--research-log", "ko", "--prose", str(prose), cwd=tmp_path)
    assert bad.returncode == 2 and "autor: unknown field" in bad.stderr and "Traceback" not in bad.stderr


def test_report_against_another_run_colours_verdicts(run_dir, tmp_path):
    base = make_synthetic_run(tmp_path / "base", repeats=10, run_id="20250228-020000-base", seed=1)
    out = write_reports(run_dir, against=base, out=tmp_path / "out", formats=("html",))
    section = out.model.section("runs")
    assert "20250228-020000-base" in section.paragraphs[0]
    html = (out.out_dir / "report.html").read_text(encoding="utf-8")
    assert re.search(r'<td class="(good|bad|muted)">(faster|slower|insufficient data)</td>', html)
    assert re.search(r'<td class="(good|bad)( num)?">×\d\.\d\d \[', html)  # the matrix colours by verdict


def test_report_does_not_import_torch(run_dir, tmp_path):
    code = (f"import sys; from benchrunner.report.writer import write_reports; "
            f"write_reports({str(run_dir)!r}, out={str(tmp_path)!r}, formats=('md',), research_log=None); "
            f"assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=bench_env())
    assert done.returncode == 0, done.stderr


def test_pdf_text_has_suite_modes_clips_and_korean_headings(report):
    pdftotext = need("pdftotext", "poppler-utils")
    text = subprocess.run([pdftotext, "-layout", str(report.out_dir / "report.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "synthetic" in text
    for mode in MODES:
        assert mode in text
    for clip in CLIPS:
        assert re.search(rf"\b{clip:g} s\b", text), clip
    for heading in KOREAN_HEADINGS:
        assert heading in text, heading
    for row in report.model.section("cases").blocks[0].rows:
        assert re.search(r"\s+".join(re.escape(cell) for cell in row), text), row


def test_pdf_every_page_renders(report, tmp_path):
    pdftoppm = need("pdftoppm", "poppler-utils")
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run([need("pdfinfo", "poppler-utils"),
                                                             str(report.out_dir / "report.pdf")],
                                                            capture_output=True, text=True).stdout).group(1))
    subprocess.run([pdftoppm, "-r", "30", "-png", str(report.out_dir / "report.pdf"), str(tmp_path / "p")],
                   check=True, capture_output=True)
    assert len(list(tmp_path.glob("p-*.png"))) == pages > 5


def test_pdf_embeds_the_shipped_korean_font(report):
    """The package's own font subset is embedded whatever the machine has installed."""
    pdffonts = need("pdffonts", "poppler-utils")
    fonts = subprocess.run([pdffonts, str(report.out_dir / "report.pdf")], capture_output=True, text=True).stdout
    assert re.search(r"BenchReportGothic-Regular\s+TrueType\s+\S+\s+yes", fonts), fonts
    assert "HYSMyeongJo" not in fonts


def test_html_renders_in_chromium_without_console_errors(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    run = make_synthetic_run(tmp_path / "runs", suite="<script>alert(1)</script>", repeats=2)
    written = write_reports(run, out=tmp_path / "out", formats=("html",), research_log=None)
    page = written.paths[0]
    charts = [b for s in written.model.sections for b in s.blocks if type(b).__name__ == "Chart"]
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                               "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in done.stdout and "<script>" not in done.stdout
    assert done.stdout.count("<svg") == len(charts) >= 6  # every chart inline, none lost


@pytest.mark.slow
def test_quick_run_through_the_cli(tmp_path):
    ran = _bench("run", str(REPO / "suites" / "quick.toml"), "--out", str(tmp_path / "results"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run = next((tmp_path / "results").iterdir())
    done = _bench("report", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "reports" / run.name
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert "# Benchmark report: quick" in md and "hybrid@20" in md
