"""The nightly digest as a Slack message: plain-text fallback plus Block Kit blocks.

Pure: no I/O, no printing. Slack's documented limits are enforced here so a suite
with many modes or a very long alert still posts:

- at most 50 blocks per message; extra modes fold into one "and N more modes" section;
- header text: plain_text, at most 150 characters;
- section text: at most 3000 characters; section fields: at most 10, each at most
  2000 characters; context block: at most 10 elements.

mrkdwn text escapes &, < and > as &amp;, &lt;, &gt; (Slack's "Escaping text" rule), so
a name like "<!channel>" or "<script>" is shown, never interpreted. The header is a
plain_text object, which Slack does not parse for links or mentions; it is sent as is.
Truncation never cuts an escape sequence in half and ends with an ellipsis.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchrunner.analysis.stats import min_samples_for

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_CHARS = 4000  # Slack truncates `text` far later (40k); keep notifications short
ELLIPSIS = "\u2026"

UTIL_LABELS = {
    "gpm_sm": "SM util",
    "nvml_gpu": "GPU busy (kernel running)",
    "cpu": "CPU",
}
NO_ALERTS = "No regressions, all budgets met"


@dataclass(frozen=True)
class ModeFigures:
    """One execution mode's headline figures for the digest."""

    mode: str  # e.g. "single", "chunked", "hybrid@32"
    p50_ms: float | None
    p99_ms: float | None  # None when there are too few samples for a p99
    peak_mem_bytes: float | None
    util_pct: float | None
    util_source: str  # "gpm_sm" | "nvml_gpu" | "cpu"
    failures: int
    runs: int


@dataclass(frozen=True)
class DigestInput:
    suite: str
    run_id: str
    commit: str | None
    gpu: str | None  # None: the run had no GPU
    modes: list[ModeFigures]
    alerts: list[str]  # regressions and budget breaches, shown after the answers
    report_name: str | None = None
    answers: list[tuple[str, str]] = ()  # (topic, sentence): the report's page 1, shown first
    variants_line: str | None = None  # the best variant within the accuracy bound (runs with variants)


@dataclass(frozen=True)
class Digest:
    text: str  # plain-text fallback (notifications, screen readers)
    blocks: list[dict]  # Block Kit


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack reserves in mrkdwn (& first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut.

    An escape sequence (&amp; &lt; &gt;) at the cut is dropped whole, never split.
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def util_label(source: str) -> str:
    return UTIL_LABELS.get(source, source)


def _ms(value: float | None, *, missing: str = "n/a") -> str:
    if value is None:
        return missing
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _p99_missing() -> str:
    return f"n/a (n<{min_samples_for(0.99)})"


def _gb(value: float | None) -> str:
    """Binary GiB, as the reports, budgets and tuning print memory."""
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _mode_summary(m: ModeFigures) -> list[tuple[str, str]]:
    """(label, value) pairs, unescaped, shared by the fields and the fallback text."""
    return [
        ("p50", _ms(m.p50_ms)),
        ("p99", _ms(m.p99_ms, missing=_p99_missing())),
        ("peak memory", _gb(m.peak_mem_bytes)),
        (util_label(m.util_source), _pct(m.util_pct)),
        ("failures", f"{m.failures}/{m.runs}"),
    ]


def _section(mrkdwn: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(mrkdwn, MAX_SECTION_CHARS)}}


def _mode_block(m: ModeFigures) -> dict:
    name = escape_mrkdwn(m.mode or "(unnamed mode)")
    flag = " :x:" if m.failures else ""
    block = _section(f"*{name}*{flag}")
    block["fields"] = [
        {"type": "mrkdwn", "text": fit(f"*{escape_mrkdwn(label)}*\n{escape_mrkdwn(value)}", MAX_FIELD_CHARS)}
        for label, value in _mode_summary(m)
    ][:MAX_FIELDS]
    return block


def _fold_block(rest: list[ModeFigures]) -> dict:
    failing = sum(1 for m in rest if m.failures)
    extra = f", {failing} with failures" if failing else ""
    names = ", ".join(escape_mrkdwn(m.mode) for m in rest)
    return _section(f"*and {len(rest)} more modes*{extra} (all figures are in the report): {names}")


def _alerts_text(alerts: list[str]) -> str:
    if not alerts:
        return f":white_check_mark: {NO_ALERTS}"
    head = f":rotating_light: *{len(alerts)} alert{'s' if len(alerts) != 1 else ''}*"
    return "\n".join([head] + [f"\u2022 {escape_mrkdwn(a)}" for a in alerts])


def _variants_blocks(d: DigestInput) -> list[dict]:
    """A run that compares backends or precisions: which variant is best within the bound."""
    if not d.variants_line:
        return []
    return [_section(fit(f":scales: {escape_mrkdwn(d.variants_line)}", MAX_FIELD_CHARS))]


def _context_block(d: DigestInput) -> dict:
    commit = f"commit `{escape_mrkdwn(d.commit[:12])}`" if d.commit else "commit unknown"
    gpu = escape_mrkdwn(d.gpu) if d.gpu else "CPU only"
    elements = [commit, gpu]
    if d.report_name:
        elements.append(f"full report: {escape_mrkdwn(d.report_name)} (in the thread)")
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": fit(e, MAX_FIELD_CHARS)} for e in elements[:MAX_CONTEXT_ELEMENTS]
        ],
    }


def header_text(d: DigestInput) -> str:
    """'<suite> nightly: run <id>', without saying "nightly" twice when the suite's name has it."""
    name = d.suite if "nightly" in d.suite.lower() else f"{d.suite} nightly"
    return f"{name}: run {d.run_id}"


def _answers_blocks(answers) -> list[dict]:
    """Page 1's sentences: one section, or one per answer when together they pass Slack's limit."""
    lines = [f"*{escape_mrkdwn(topic)}*: {escape_mrkdwn(text)}" for topic, text in answers]
    if not lines:
        return []
    joined = "\n".join(lines)
    if len(joined) <= MAX_SECTION_CHARS:
        return [_section(joined)]
    return [_section(line) for line in lines]


def _fallback_text(d: DigestInput) -> str:
    lines = [header_text(d)]
    lines.extend(f"{topic}: {text}" for topic, text in d.answers)
    if d.alerts:
        lines.append(f"{len(d.alerts)} alert(s):")
        lines.extend(f"- {a}" for a in d.alerts)
    else:
        lines.append(NO_ALERTS)
    if d.variants_line:
        lines.append(d.variants_line)
    for m in d.modes:
        lines.append(f"{m.mode}: " + ", ".join(f"{label} {value}" for label, value in _mode_summary(m)))
    lines.append(f"commit {d.commit[:12] if d.commit else 'unknown'}, {d.gpu or 'CPU only'}")
    return fit(escape_mrkdwn("\n".join(lines)), MAX_FALLBACK_CHARS)


def build_digest(d: DigestInput) -> Digest:
    """The digest message for one run: header, the report's page-1 answers, then the alerts
    (regressions, budget breaches), one section per mode, and the context (commit, GPU, the
    PDF posted into the thread)."""
    header = {
        "type": "header",
        "text": {"type": "plain_text", "text": fit(header_text(d), MAX_HEADER_CHARS)},
    }
    blocks: list[dict] = [header, *_answers_blocks(d.answers)[:MAX_BLOCKS - 4], _section(_alerts_text(d.alerts))]
    blocks.extend(_variants_blocks(d))
    room = MAX_BLOCKS - len(blocks) - 1  # the context block comes last
    if len(d.modes) <= room:
        blocks.extend(_mode_block(m) for m in d.modes)
    else:
        shown = room - 1  # one block for the folded rest
        blocks.extend(_mode_block(m) for m in d.modes[:shown])
        blocks.append(_fold_block(d.modes[shown:]))
    blocks.append(_context_block(d))
    return Digest(text=_fallback_text(d), blocks=blocks)
