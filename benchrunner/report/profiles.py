"""The profiles stored in the run folder (``bench profile ... --run RUN``), summarised: per
stage busy %, idle and wall time, the top ops, the largest idle gaps, and the two modes side
by side when ``--compare`` was used.

Read from ``profiles/*/summary.json`` and ``profiles/compare.json`` through
benchrunner.profiling.load_profile_summary (which imports no torch). A run without profiles
has no profile section.
"""

from __future__ import annotations

from pathlib import Path

from . import fmt
from .analysis import Outcome
from .model import Chart, Table

TITLE = "Profile summary"
TOP_OPS_PER_STAGE = 3
GAPS_PER_PROFILE = 5
OP_NAME_CHARS = 60
REGION_NOTES = {"io_wait": "the main thread waiting for its input from the prefetch thread",
                "other": "the rest of a repeat outside the stages (cutting, overlap-add merging, Python)"}
BUSY_TEXT = {
    "cpu": "On the CPU, busy is host-side: a torch op was executing on the main thread; idle means no torch op "
           "was running there (Python, queue waits, sleeps). There is no separate device, so this is neither CPU "
           "utilisation nor comparable with a CUDA profile, where busy means a kernel was running on the GPU.",
    "cuda": "On CUDA, busy is device-side: a kernel, memcpy or memset was running on the GPU (any stream); idle "
            "is the gaps between them. Launches are asynchronous, so a stage's busy time is the GPU work that "
            "overlapped the host being in that stage.",
}


def profile_outcome(run_dir: Path) -> Outcome | None:
    """The run's profiles, None when it has none, or a note when they cannot be read."""
    try:
        from ..profiling import load_profile_summary
    except ImportError as exc:
        return Outcome(TITLE, note=f"not available: benchrunner.profiling could not be imported ({exc})")
    try:
        found = load_profile_summary(run_dir)
    except (OSError, ValueError) as exc:
        return Outcome(TITLE, note=f"not available: a file in {Path(run_dir) / 'profiles'} is unreadable "
                                   f"({type(exc).__name__}: {exc})")
    return None if found is None else Outcome(TITLE, value=found)


def _name(profile: dict) -> str:
    return Path(str(profile.get("dir") or profile.get("case_id"))).name


def _title(profile: dict) -> str:
    variant = "" if profile.get("variant") in (None, "default") else f"{profile['variant']} · "
    return f"{variant}{profile.get('mode')} · {fmt.seconds(profile.get('clip_s'))} s"


def _kind(activity: str) -> str:
    return "kernels" if activity == "cuda" else "operators"


def _op(name: str) -> str:
    return name if len(name) <= OP_NAME_CHARS else name[:OP_NAME_CHARS - 3] + "..."


def _top_ops(ops: list[dict]) -> str:
    return " · ".join(f"{_op(str(o['op']))} {fmt.ms(o['self_time_ms'])}" for o in ops[:TOP_OPS_PER_STAGE])


def profile_table(profile: dict) -> Table:
    columns = ["Stage", "Calls", "Wall ms", "Busy ms", "Idle ms", "Busy %", "Largest gap ms",
               f"Top {_kind(profile.get('activity', 'cpu'))} (self ms)"]
    top = profile.get("top_ops") or {}
    rows = [[r["region"], fmt.calls(r["calls"]), fmt.ms(r["wall_ms"]), fmt.ms(r["busy_ms"]), fmt.ms(r["idle_ms"]),
             fmt.plain(r["busy_pct"], 1), fmt.ms(r["largest_gap_ms"]), _top_ops(top.get(r["region"]) or [])]
            for r in profile.get("regions") or []]
    rows.append(["total", "-", fmt.ms(profile.get("window_ms")), fmt.ms(profile.get("busy_ms")),
                 fmt.ms(profile.get("idle_ms")), fmt.plain(profile.get("busy_pct"), 1), "-", ""])
    schedule = profile.get("schedule") or {}
    caption = (f"Per repeat, over {profile.get('repeats_profiled')} profiled repeats "
               f"(after {schedule.get('wait', '?')} unprofiled "
               f"and {schedule.get('warmup', '?')} warm-up); profiled {str(profile.get('created_at', '?'))[:10]}.")
    return Table(f"profile-{_name(profile)}", columns, rows, caption=caption)


def gap_table(profiles: list[dict]) -> Table:
    columns = ["Profile", "Gap ms", "During", "Profiled repeat", "At ms into the repeat"]
    rows = [[_title(p), fmt.ms(g["duration_ms"]), str(g["region"]), str(int(g["repeat"]) + 1), fmt.ms(g["offset_ms"])]
            for p in profiles for g in (p.get("largest_gaps") or [])[:GAPS_PER_PROFILE]]
    return Table("profile-gaps", columns, rows,
                 caption=f"The {GAPS_PER_PROFILE} largest idle gaps of each profile: how long, in which stage or "
                         "region, in which profiled repeat (1 = the first) and how far into it.",
                 empty="No idle gap was recorded.")


def _clip_of_comparison(comparison: dict, profiles: list[dict]) -> str:
    """The clip length both compared modes were profiled at, when the folder has exactly one."""
    clips = [{fmt.seconds(p.get("clip_s")) for p in profiles if p.get("mode") == comparison.get(side)}
             for side in ("a", "b")]
    common = clips[0] & clips[1]
    return f" at {next(iter(common))} s" if len(common) == 1 else ""


def comparison_blocks(comparison: dict, profiles: list[dict]) -> list:
    a, b = str(comparison.get("a")), str(comparison.get("b"))
    regions = Table(
        "profile-compare",
        ["Stage", f"{a} busy %", f"{b} busy %", f"{a} idle ms", f"{b} idle ms", f"{a} wall ms", f"{b} wall ms"],
        [[r["region"], fmt.plain(r["a_busy_pct"], 1), fmt.plain(r["b_busy_pct"], 1), fmt.ms(r["a_idle_ms"]),
          fmt.ms(r["b_idle_ms"]), fmt.ms(r["a_wall_ms"]), fmt.ms(r["b_wall_ms"])]
         for r in comparison.get("regions") or []],
        caption=f"{a} and {b} side by side, per repeat.")
    kind = _kind(str(comparison.get("activity")))
    ops = Table(
        "profile-compare-ops", ["Stage", "Op", f"{a} self ms", f"{b} self ms", "Change ms", "Change"],
        [[o["stage"], _op(str(o["op"])), fmt.ms(o["a_ms"]), fmt.ms(o["b_ms"]), fmt.signed_ms(o["change_ms"]),
          fmt.relative(None if o.get("change_pct") is None else o["change_pct"] / 100)]
         for o in comparison.get("ops") or []],
        caption=f"The {kind} with the most self time in either mode, per repeat; change = {a} - {b} "
                f"(n/a: not run by {b}).")
    return [f"{a} against {b}{_clip_of_comparison(comparison, profiles)} (bench profile --compare {a} {b}):",
            regions, ops]


def profile_chart(profiles: list[dict]) -> Chart:
    panels = [{"title": f"{_title(p)} ({p.get('device')})",
               "regions": [r["region"] for r in p.get("regions") or []],
               "busy_ms": [fmt.number(r["busy_ms"]) or 0.0 for r in p.get("regions") or []],
               "idle_ms": [fmt.number(r["idle_ms"]) or 0.0 for r in p.get("regions") or []],
               "busy_pct": [fmt.plain(r["busy_pct"], 0) for r in p.get("regions") or []]} for p in profiles]
    return Chart("profile", "Where a profiled repeat's time goes: wall time per stage split into busy (dark) and "
                 "idle (light), with the busy share at the end of each bar.", {"panels": panels})


def profile_paragraphs(profiles: list[dict]) -> list[str]:
    activities = list(dict.fromkeys(str(p.get("activity")) for p in profiles))
    regions = "; ".join(f"{name}: {text}" for name, text in REGION_NOTES.items())
    return ["Where the time of each profiled case goes, stage by stage, from bench profile ... --run (the run "
            "folder's profiles/). Times are per profiled repeat and include the profiler's overhead: use them to "
            "see where time goes, and the tables above for latency.",
            *[BUSY_TEXT[a] for a in activities if a in BUSY_TEXT], f"Besides the stages, {regions}."]


def profile_blocks(found: dict) -> list:
    profiles = list(found.get("profiles") or [])
    blocks: list = [profile_chart(profiles)]
    for p in profiles:
        blocks += [f"{_title(p)} ({p.get('case_id')} on {p.get('device')}), per stage:", profile_table(p)]
    blocks.append(gap_table(profiles))
    for comparison in found.get("comparisons") or []:
        blocks += comparison_blocks(comparison, profiles)
    return blocks
