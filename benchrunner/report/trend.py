"""The trend of the run's suite over its last nights, read from the history store that
``bench nightly`` (or ``bench history --record``) fills: one line per case, change points
marked, and a table of them.

Read only: the store is opened with ``create=False``, so a report never creates a database.
A missing store, one without this suite, or one that cannot be read leaves the section out
with a one-line note in the appendix. The nights end at this run (by start time), so a
report of the same run stays the same when later nights are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..errors import BenchError, UserError
from ..store.results import TOTAL_STAGE
from . import fmt
from .analysis import Outcome
from .model import Chart, RunView, Table
METRIC = "latency"  # latency p50 of stage total, as `bench history` reads it
TITLE = "Trend"
MIN_NIGHTS = 2


@dataclass(frozen=True)
class TrendData:
    db: str  # the store's URL, password masked
    requested: int  # --trend-nights
    nights: list[dict]  # night (1 = oldest), run_id, started_at (UTC timestamp)
    series: pd.DataFrame  # History.series rows of those nights: run_id, started_at, case_id, value (ms)
    changes: list[dict]  # history_trend.trend_changes over those nights
    this_night: int | None  # this run's night, when the store has it

    @property
    def cases(self) -> list[str]:
        return list(dict.fromkeys(self.series["case_id"]))


def check_nights(nights: int) -> int:
    if not isinstance(nights, int) or isinstance(nights, bool) or nights < 1:
        raise UserError(f"--trend-nights: {nights!r} is not a number of nights (expected 1 or more, e.g. 14)")
    return nights


def trend_outcome(view: RunView, db_url: str | None, nights: int) -> Outcome:
    """The last ``nights`` nights of the run's suite up to this run, or a note saying why not."""
    try:
        from ..analysis.history_trend import trend_changes
        from ..store.history import DB_ENV, default_db_url, mask_url, open_history
    except ImportError as exc:
        return Outcome(TITLE, note=f"not shown: benchrunner.store.history could not be imported ({exc})")
    url = db_url or default_db_url()
    try:
        with open_history(url, create=False) as history:
            series = history.series(view.suite, METRIC, stage=TOTAL_STAGE)
    except BenchError as exc:
        return Outcome(TITLE, note=f"not shown: {str(exc).removeprefix(f'--db/{DB_ENV}: ')}")
    db = mask_url(url)
    window = _window(series, view, nights)
    runs = list(dict.fromkeys(window["run_id"]))
    if len(runs) < MIN_NIGHTS:
        found = "no finished or interrupted run" if not runs else "only one night"
        return Outcome(TITLE, note=f"not shown: the history store {db} has {found} of suite {view.suite!r} "
                                   f"up to this run (a trend needs {MIN_NIGHTS} nights or more)")
    starts = window.drop_duplicates("run_id").set_index("run_id")["started_at"]
    night_list = [{"night": i + 1, "run_id": r, "started_at": starts[r]} for i, r in enumerate(runs)]
    this = next((n["night"] for n in night_list if n["run_id"] == view.run_id), None)
    return Outcome(TITLE, value=TrendData(db, nights, night_list, window, trend_changes(window, METRIC), this))


def night_noise(view: RunView, db_url: str | None, metrics: tuple[str, ...]) -> dict[str, dict | None]:
    """Each metric's night-to-night noise per case from the history store, over the nights up
    to this run (what ``bench nightly`` judged this run with); {} when there is no store."""
    try:
        from ..analysis.compare import night_noise_of
        from ..store.history import default_db_url, open_history
        with open_history(db_url or default_db_url(), create=False) as history:
            return {m: night_noise_of(history, view.suite, m, until=view.manifest.get("started_at"))
                    for m in metrics}
    except (ImportError, BenchError):
        return {}


def _window(series: pd.DataFrame, view: RunView, nights: int) -> pd.DataFrame:
    """The newest ``nights`` runs that started no later than this run (and this run itself)."""
    cutoff = pd.to_datetime(view.manifest.get("started_at"), utc=True, errors="coerce")
    kept = series if pd.isna(cutoff) else series[(series["started_at"] <= cutoff) | (series["run_id"] == view.run_id)]
    runs = list(dict.fromkeys(kept["run_id"]))[-nights:]
    return kept[kept["run_id"].isin(runs)].reset_index(drop=True)


def _date(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _split(case_id: str) -> tuple[str, str, float | None]:
    """``variant/mode/30s`` as (variant, mode, 30.0); a case id of another shape is its own mode."""
    parts = str(case_id).split("/")
    if len(parts) >= 3 and parts[-1].endswith("s") and fmt.number(parts[-1][:-1]) is not None:
        return "/".join(parts[:-2]), parts[-2], fmt.number(parts[-1][:-1])
    return "", str(case_id), None


def trend_chart(data: TrendData, modes: list[str]) -> Chart:
    """One panel per mode (in the run's mode order), one line per clip length, the change
    points marked on the lines."""
    night_of = {n["run_id"]: n["night"] for n in data.nights}
    values: dict[str, list[float | None]] = {c: [None] * len(data.nights) for c in data.cases}
    for run_id, case_id, value in zip(data.series["run_id"], data.series["case_id"], data.series["value"]):
        values[case_id][night_of[run_id] - 1] = fmt.number(value)
    split = {c: _split(c) for c in data.cases}
    variants = {v for v, _, _ in split.values()}
    panel_of = {c: (m if len(variants) <= 1 else f"{v} · {m}") for c, (v, m, _) in split.items()}
    order = {label: i for i, label in enumerate(modes)}
    labels = sorted(dict.fromkeys(panel_of.values()), key=lambda x: (order.get(x, len(order)), x))
    clips = sorted({clip for _, _, clip in split.values() if clip is not None})
    panels = []
    for label in labels:
        cases = sorted((c for c in data.cases if panel_of[c] == label), key=lambda c: (split[c][2] or 0.0, c))
        lines = [{"label": f"{fmt.seconds(split[c][2])} s" if split[c][2] is not None else c,
                  "colour": clips.index(split[c][2]) if split[c][2] is not None else len(clips),
                  "values": values[c]} for c in cases]
        marks = [{"night": ch["night"], "value": values[ch["case_id"]][ch["night"] - 1],
                  "regression": bool(ch["regression"])} for ch in data.changes if panel_of[ch["case_id"]] == label]
        panels.append({"label": label, "lines": lines, "changes": marks})
    dates = [f"{pd.Timestamp(n['started_at']):%m-%d}" for n in data.nights]
    caption = (f"Median end-to-end latency (p50, stage total) over the last {len(data.nights)} nights up to this "
               "run, one panel per mode and one line per clip length; a red triangle marks the first night of a "
               "new level flagged as a regression, a green one an improvement")
    caption += "; the dotted line is this run." if data.this_night else "."
    return Chart("trend", caption, {"panels": panels, "dates": dates, "this_night": data.this_night})


def change_table(data: TrendData) -> Table:
    columns = ["Case", "Night", "Date (UTC)", "Run", "p50 before ms", "p50 after ms", "Change", "p", "Verdict"]
    rows, tones = [], []
    for c in data.changes:
        verdict = "regression" if c["regression"] else "improvement"
        rows.append([str(c["case_id"]), str(c["night"]), _date(c["started_at"]), str(c["run_id"]), fmt.ms(c["before"]),
                     fmt.ms(c["after"]), fmt.relative(c["relative_change"]), fmt.p_value(c["p_value"]), verdict])
        tones.append([""] * 8 + ["bad" if c["regression"] else "good"])
    return Table("trend-changes", columns, rows, tones,
                 caption="Change points in latency p50: the first night of each new level (medians of the nights "
                         "before and after it; a change counts when it is at least 5 % and p < 0.01).",
                 empty="No change points: every case kept its level over these nights.")


def trend_paragraphs(data: TrendData) -> list[str]:
    first, last = data.nights[0], data.nights[-1]
    span = (f"{len(data.nights)} nights ({_date(first['started_at'])} to {_date(last['started_at'])}, UTC) from "
            f"the history store {data.db}")
    if len(data.nights) < data.requested:
        span += f"; {data.requested} were asked for, the store has {len(data.nights)} up to this run"
    where = (f"This run is night {data.this_night}." if data.this_night else
             "This run is not in the store (bench nightly records its runs; record others with "
             "`bench history SUITE --record RESULTS_DIR`), so the nights shown end before it.")
    regressions = sum(1 for c in data.changes if c["regression"])
    found = (f"{_count(len(data.changes), 'change point')}, {regressions} of them "
             f"{'a regression' if regressions == 1 else 'regressions'}." if data.changes else "No change points.")
    return [f"Latency p50 of every case of this suite over {span}. {where} {found}"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
