"""Matplotlib charts of the report model, drawn without pyplot (no global state) and
rendered deterministically: a fixed SVG hash salt, no dates or creator in the metadata.

SVG for the HTML page and, converted to reportlab drawings (svglib), for the PDF: vector
charts that stay sharp when zoomed, with text as paths so they need no font. Modes are told
apart by the Okabe-Ito colour-blind-safe palette and by a marker and a line style each.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib
from matplotlib.figure import Figure

from .fonts import matplotlib_families
from .model import Chart
from .throughput_charts import DRAW as _throughput_draw

PNG_DPI = 200
WIDTH_IN = 10.0
SVG_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
PNG_METADATA = {"Software": None}
# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
MODE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MODE_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
MODE_LINES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2))]
STAGE_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f"]
FAIL_COLOUR = "#c62828"


def _style() -> dict:
    return {"svg.hashsalt": "benchrunner-report", "svg.fonttype": "path", "font.size": 9,
            "font.family": matplotlib_families(), "axes.titlesize": 10, "axes.spines.top": False,
            "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
            "legend.frameon": False}


def _nan(values):
    return [math.nan if v is None else v for v in values]


def mode_style(i: int) -> dict:
    """Colour, marker and line style of the i-th mode: no two of the first eight share any."""
    return {"color": MODE_COLOURS[i % len(MODE_COLOURS)], "marker": MODE_MARKERS[i % len(MODE_MARKERS)],
            "ls": MODE_LINES[i % len(MODE_LINES)]}


def _clip_axis(ax, clips: list[float]) -> None:
    """Clip lengths on x; logarithmic when they span more than 10x, so 5 s and 10 s do not crowd."""
    from matplotlib.ticker import NullFormatter, NullLocator

    positive = [c for c in clips if c > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(clips, [f"{c:g}" for c in clips])
    ax.set_xlabel("Clip length (s)")


def _time_scale(values) -> tuple[str, float]:
    largest = max((v for v in values if v is not None), default=0.0)
    if largest >= 120_000:
        return "min", 60_000.0
    return ("s", 1000.0) if largest >= 10_000 else ("ms", 1.0)


def _latency(fig: Figure, data: dict) -> None:
    ax = fig.add_subplot()
    unit, scale = _time_scale([v for s in data["series"] for v in s["p50"] + s["p90"]])
    for i, s in enumerate(data["series"]):
        style = mode_style(i)
        x = s["clip_s"]
        ax.plot(x, [v / scale for v in _nan(s["p50"])], ms=4, lw=1.3, label=s["label"], **style)
        dead = [c for c, v in zip(x, s["p50"]) if v is None]
        if dead:
            ax.scatter(dead, [0] * len(dead), marker="x", s=50, color=style["color"], clip_on=False, zorder=3)
        lo, hi = _nan(s["p10"]), _nan(s["p90"])
        if any(not math.isnan(v) for v in lo):
            ax.fill_between(x, [v / scale for v in lo], [v / scale for v in hi], color=style["color"], alpha=0.12, lw=0)
        for clip, points in zip(x, s.get("points") or []):
            offset = 1 + 0.012 * (i - (len(data["series"]) - 1) / 2)  # side by side, deterministic
            ax.scatter([clip * offset] * len(points), [v / scale for v in points], s=7, alpha=0.55,
                       color=style["color"], marker=style["marker"], lw=0, zorder=2)
    clips = sorted({c for s in data["series"] for c in s["clip_s"]})
    _clip_axis(ax, clips)
    ax.set(ylabel=f"End-to-end latency, median ({unit})")
    ax.set_ylim(bottom=0)
    if any(v is None for s in data["series"] for v in s["p50"]):
        ax.scatter([], [], marker="x", color="black", label="x: no successful repeat")
    ax.legend(loc="upper left", ncols=2)


def _stages(fig: Figure, data: dict) -> None:
    panels = data["panels"]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    top = max((sum(v or 0 for v in vals) for p in panels for vals in zip(*p["values"].values())), default=0.0)
    unit, scale = _time_scale([top])
    top = top or 1.0
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        _stage_panel(ax, panel, data["stages"], scale, top / scale)
        ax.set_ylabel(f"Median latency ({unit})" if ax.get_subplotspec().is_first_col() else "")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels))


def _stage_panel(ax, panel: dict, stages: list[str], scale: float, top: float) -> None:
    x = list(range(len(panel["clips"])))
    bottom = [0.0] * len(x)
    for j, stage in enumerate(stages):
        heights = [(v or 0.0) / scale for v in panel["values"][stage]]
        ax.bar(x, heights, bottom=bottom, color=STAGE_COLOURS[j % len(STAGE_COLOURS)], label=stage, width=0.7)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for xi, b, failed in zip(x, bottom, panel["failed"]):
        if failed:
            text = failed if b else f"{failed}\nfailed"
            ax.text(xi, b + top * 0.02, text, ha="center", va="bottom", color=FAIL_COLOUR, fontsize=7)
    ax.set_xticks(x, [f"{c:g}" for c in panel["clips"]])
    ax.set_title(panel["label"])
    ax.set_xlabel("Clip length (s)")
    ax.set_ylim(0, top * 1.15)
    ax.grid(axis="x", visible=False)


def _memory(fig: Figure, data: dict) -> None:
    ax = fig.add_subplot()
    axis = data.get("axis") or {"scale": "linear", "budget_on_scale": True, "ylim": None}
    for i, s in enumerate(data["series"]):
        style = mode_style(i)
        ax.plot(s["clip_s"], _nan(s["peak"]), ms=4, lw=1.3, label=s["label"], **style)
        bad = [(x, y) for x, y, f in zip(s["clip_s"], s["peak"], s["failed"]) if f and y is not None]
        if bad:
            ax.scatter(*zip(*bad), marker="x", s=60, color=FAIL_COLOUR, zorder=3)
    if axis["scale"] == "log":
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    if axis["ylim"]:
        ax.set_ylim(*axis["ylim"])
    budget = data["budget"]
    if budget is not None and axis["budget_on_scale"]:
        ax.axhline(budget, color=FAIL_COLOUR, ls="--", lw=1.2, label=f"budget {budget:g} {data['unit']}")
    elif budget is not None:
        ax.annotate(f"budget {budget:g} {data['unit']} (off scale) \u2191", xy=(0.99, 0.99), xycoords="axes fraction",
                    ha="right", va="top", color=FAIL_COLOUR, fontsize=8,
                    bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": FAIL_COLOUR, "lw": 0.8})
    clips = sorted({c for s in data["series"] for c in s["clip_s"]})
    _clip_axis(ax, clips)
    ax.set(ylabel=f"Peak memory ({data['unit']}{', log scale' if axis['scale'] == 'log' else ''})")
    ax.legend(loc="upper left", ncols=2)


def _util(fig: Figure, data: dict) -> None:
    ax = fig.add_subplot()
    for i, s in enumerate(data["series"]):
        style = mode_style(i)
        ax.plot(_nan(s["t_s"]), _nan(s["value"]), lw=1.0, color=style["color"], ls=style["ls"], label=s["label"])
    ax.set(xlabel="Time since the clip length's cases started (s)", ylabel=data["ylabel"], ylim=(0, 105))
    ax.legend(loc="best")


def _util_clip(fig: Figure, data: dict) -> None:
    left, right = fig.subplots(1, 2)
    clips = sorted({c for s in data["series"] for c in s["clip_s"]})
    for i, s in enumerate(data["series"]):
        style = mode_style(i)
        left.plot(s["clip_s"], _nan(s["util"]), ms=4, lw=1.2, label=s["label"], **style)
        right.plot(s["clip_s"], _nan(s["rtf"]), ms=4, lw=1.2, label=s["label"], **style)
    for ax in (left, right):
        _clip_axis(ax, clips)
    left.set(ylabel=data["ylabel"], ylim=(0, 105), title="Utilisation")
    right.set(ylabel="Real-time factor (latency / clip length)", title="Speed (lower is faster)")
    right.set_ylim(bottom=0)
    left.legend(loc="best", ncols=2)


def _failure_cell(text: str) -> float:
    k, _, n = text.partition("/")
    return int(k) / int(n) if n and n.isdigit() and int(n) else math.nan


def _failures(fig: Figure, data: dict) -> None:
    ax = fig.add_subplot()
    share = [[_failure_cell(c) for c in row] for row in data["cells"]]
    ax.imshow(share, cmap="Reds", vmin=0, vmax=1.3, aspect="auto")
    for r, row in enumerate(data["cells"]):
        for c, text in enumerate(row):
            value = share[r][c]
            colour = "white" if value > 0.6 else "black" if value > 0 else "#9e9e9e"
            ax.text(c, r, text, ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(data["clips"])), [f"{c:g} s" for c in data["clips"]])
    ax.set_yticks(range(len(data["modes"])), data["modes"])
    ax.grid(False)
    ax.set_xlabel("Clip length")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _sweep(fig: Figure, data: dict) -> None:
    ax = fig.add_subplot()
    unit, scale = _time_scale(data["total_ms"])
    x = list(range(len(data["threshold_s"])))
    heights = [(v or 0.0) / scale for v in data["total_ms"]]
    colours = [MODE_COLOURS[2] if ok else "#bdbdbd" for ok in data["eligible"]]
    bars = ax.bar(x, heights, color=colours, width=0.6)
    for xi, bar, t, failures in zip(x, bars, data["threshold_s"], data["failures"]):
        label = f"failures {failures}" + ("\nrecommended" if t == data["recommended"] else "")
        ax.text(xi, bar.get_height(), label, ha="center", va="bottom", fontsize=8)
        if t == data["recommended"]:
            bar.set_edgecolor("black")
            bar.set_linewidth(1.5)
    ax.set_xticks(x, [f"{t:g} s" for t in data["threshold_s"]])
    ax.set(xlabel="Hybrid threshold", ylabel=f"Total time over all clips ({unit})")
    ax.set_ylim(0, max(heights or [1.0]) * 1.25)


CHANGE_COLOURS = {True: FAIL_COLOUR, False: "#2e7d32"}  # regression, improvement
BUSY_COLOUR, IDLE_COLOUR = "#4e79a7", "#c9d6e3"


def _trend(fig: Figure, data: dict) -> None:
    panels = data["panels"]
    cols = min(3, len(panels))
    axes = fig.subplots(math.ceil(len(panels) / cols), cols, sharex=True, squeeze=False).ravel()
    x = list(range(1, len(data["dates"]) + 1))
    every = math.ceil(len(x) / (8 if cols < 3 else 5))
    shown = [i for i in x if (len(x) - i) % every == 0]  # the last night always labelled
    every_value = [v for p in panels for line in p["lines"] for v in line["values"] if v is not None]
    unit, scale = _time_scale(every_value)
    positive = [v for v in every_value if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 20  # one scale for every panel
    for ax, panel in zip(axes, panels):
        for line in panel["lines"]:
            style = mode_style(line["colour"])
            ax.plot(x, [v / scale for v in _nan(line["values"])], ms=2.5, lw=1.2, label=line["label"], **style)
        for regression in (True, False):
            marks = [c for c in panel["changes"] if c["regression"] is regression and c["value"] is not None]
            if marks:
                ax.scatter([c["night"] for c in marks], [c["value"] / scale for c in marks], s=70, zorder=4,
                           marker="^" if regression else "v", color=CHANGE_COLOURS[regression],
                           edgecolors="black", linewidths=0.6)
        if data["this_night"]:
            ax.axvline(data["this_night"], color="#546e7a", ls=":", lw=1.2)
        _trend_y_axis(ax, [v / scale for line in panel["lines"] for v in line["values"] if v is not None], log)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(f"Latency p50 ({unit}{', log scale' if log else ''})")
        ax.set_title(panel["label"])
        ax.set_xticks(x, [data["dates"][i - 1] if i in shown else "" for i in x])
        ax.set_xlim(0.5, len(x) + 0.5)
        ax.xaxis.set_tick_params(labelbottom=True)
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("Night (UTC date, month-day)")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _trend_legend(fig, panels, data["this_night"])


def _trend_y_axis(ax, values: list[float], log: bool) -> None:
    """Linear from 0; or logarithmic with plain-number ticks, when the lines span more than 20x,
    so that a short clip's 10 % step shows as clearly as a long clip's."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not log:
        ax.set_ylim(0, max(values or [1.0]) * 1.15)
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _trend_legend(fig: Figure, panels: list[dict], this_night: int | None) -> None:
    from matplotlib.lines import Line2D

    lines = {line["label"]: line["colour"] for panel in panels for line in panel["lines"]}
    handles = [Line2D([], [], ms=3, label=label, **mode_style(c))
               for label, c in sorted(lines.items(), key=lambda item: item[1])]
    found = {c["regression"] for panel in panels for c in panel["changes"]}
    for regression in (True, False):
        if regression in found:
            handles.append(Line2D([], [], ls="", marker="^" if regression else "v", ms=8, mec="black", mew=0.6,
                                  color=CHANGE_COLOURS[regression],
                                  label="change point: " + ("regression" if regression else "improvement")))
    if this_night:
        handles.append(Line2D([], [], color="#546e7a", ls=":", label="this run"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6))


def _profile(fig: Figure, data: dict) -> None:
    panels = data["panels"]
    cols = min(2, len(panels))
    axes = fig.subplots(math.ceil(len(panels) / cols), cols, sharex=True, squeeze=False).ravel()
    top = max((b + i for p in panels for b, i in zip(p["busy_ms"], p["idle_ms"])), default=0.0) or 1.0
    unit, scale = _time_scale([top])
    for ax, panel in zip(axes, panels):
        y = list(range(len(panel["regions"])))
        busy = [v / scale for v in panel["busy_ms"]]
        idle = [v / scale for v in panel["idle_ms"]]
        ax.barh(y, busy, color=BUSY_COLOUR, height=0.6, label="busy")
        ax.barh(y, idle, left=busy, color=IDLE_COLOUR, height=0.6, label="idle")
        for yi, b, i, pct in zip(y, busy, idle, panel["busy_pct"]):
            ax.text(b + i + top / scale * 0.01, yi, f"{pct} % busy", va="center", fontsize=7)
        ax.set_yticks(y, panel["regions"])
        ax.invert_yaxis()
        ax.set_title(panel["title"])
        ax.set_xlim(0, top / scale * 1.2)
        ax.set_xlabel(f"Wall time per repeat ({unit})")
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=2)


DRAW = {"latency": _latency, "stages": _stages, "memory": _memory, "util": _util, "util_clip": _util_clip,
        "failures": _failures,
        "sweep": _sweep, "trend": _trend, "profile": _profile}
DRAW.update(_throughput_draw)  # the throughput section's charts (throughput_charts.py)


def _height_in(chart: Chart) -> float:
    if "height_in" in chart.data:  # charts that size themselves (the throughput section's)
        return chart.data["height_in"]
    if chart.key == "stages":
        return 0.8 + 2.6 * math.ceil(len(chart.data["panels"]) / 3)
    if chart.key == "failures":
        return 1.0 + 0.38 * max(len(chart.data["modes"]), 2)
    if chart.key == "trend":
        return 1.0 + 2.5 * math.ceil(len(chart.data["panels"]) / 3)
    if chart.key == "profile":
        panels = chart.data["panels"]
        rows = max((len(p["regions"]) for p in panels), default=1)
        return 0.8 + (0.7 + 0.28 * rows) * math.ceil(len(panels) / 2)
    if chart.key in ("util", "sweep"):
        return 2.6
    if chart.key == "util_clip":
        return 3.6
    return 3.3


NARROW = ("latency", "memory", "util", "sweep")  # one panel: drawn 7 in wide, so its text stays large in the PDF


def _width_in(chart: Chart) -> float:
    return 7.0 if chart.key in NARROW else WIDTH_IN


def figure(chart: Chart) -> Figure:
    fig = Figure(figsize=(_width_in(chart), _height_in(chart)), layout="constrained")
    DRAW[chart.key](fig, chart.data)
    return fig


def render(chart: Chart, kind: str) -> bytes:
    """The chart as "svg" or "png" bytes; the same chart always gives the same bytes."""
    with matplotlib.rc_context(_style()):
        fig = figure(chart)
        buffer = io.BytesIO()
        if kind == "svg":
            fig.savefig(buffer, format="svg", metadata=SVG_METADATA)
        else:
            fig.savefig(buffer, format="png", dpi=PNG_DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def size_in(chart: Chart) -> tuple[float, float]:
    return _width_in(chart), _height_in(chart)


def drawing(chart: Chart, width_pt: float):
    """The chart as a reportlab Drawing (vector, from the SVG), scaled to ``width_pt`` points."""
    from svglib.svglib import svg2rlg

    d = svg2rlg(io.BytesIO(render(chart, "svg")))
    factor = width_pt / d.width
    d.width, d.height = d.width * factor, d.height * factor
    d.scale(factor, factor)
    return d


_ID = re.compile(r'id="([^"]+)"')


def inline_svg(chart: Chart, index: int) -> str:
    """SVG markup to embed in HTML: no XML prolog, ids made unique per chart, scalable."""
    text = render(chart, "svg").decode("utf-8")
    text = text[text.index("<svg"):]
    prefix = f"c{index}-"
    for ident in sorted(set(_ID.findall(text)), key=len, reverse=True):
        text = text.replace(f'id="{ident}"', f'id="{prefix}{ident}"').replace(f"#{ident})", f"#{prefix}{ident})")
        text = text.replace(f'href="#{ident}"', f'href="#{prefix}{ident}"')
    text = re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"', r'<svg \1', text, count=1)
    return text.replace("<svg ", f'<svg role="img" aria-label="{chart.key} chart" class="chart" ', 1)
