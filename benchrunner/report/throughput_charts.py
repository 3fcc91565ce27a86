"""Drawing the throughput section's charts (report/throughput.py); registered in charts.DRAW."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

MODE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
STAGE_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f"]
BUDGET_COLOUR = "#c62828"


def _nan(values):
    return [math.nan if v is None else v for v in values]


def throughput_curve(fig: Figure, data: dict) -> None:
    ax = fig.add_subplot()
    for i, s in enumerate(data["series"]):
        colour = MODE_COLOURS[i % len(MODE_COLOURS)]
        x = _nan(s["clips_per_s"])
        ax.plot(x, _nan(s["p50"]), marker="o", ms=4, color=colour, label=f"{s['label']} p50")
        ax.plot(x, _nan(s["tail"]), ls="--", marker=".", color=colour, lw=1, label=f"{s['label']} {s['tail_name']}")
        for xi, yi, c in zip(x, _nan(s["p50"]), s["concurrency"]):
            if not math.isnan(xi) and not math.isnan(yi):
                ax.annotate(f"c{c}", (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7)
        if s["knee"] is not None:
            k = s["concurrency"].index(s["knee"])
            ax.scatter([x[k]], [_nan(s["tail"])[k]], marker="*", s=160, color=colour, zorder=4, edgecolor="black")
    if data["budget_ms"] is not None:
        ax.axhline(data["budget_ms"], color=BUDGET_COLOUR, ls=":", lw=1.2, label=f"budget {data['budget_ms']:g} ms")
    ax.set(xlabel="Throughput (clips/s)", ylabel="Latency per clip under load (ms)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", ncols=2)


def throughput_stages(fig: Figure, data: dict) -> None:
    panels = data["panels"]
    cols = min(3, max(1, len(panels)))
    axes = fig.subplots(max(1, math.ceil(len(panels) / cols)), cols, sharey=True, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        for j, (stage, values) in enumerate(panel["stages"].items()):
            width = 2.5 if stage in panel["bottleneck"].split("+") else 1.2
            ax.plot(panel["concurrency"], _nan(values), marker="o", ms=3, lw=width,
                    color=STAGE_COLOURS[j % len(STAGE_COLOURS)], label=stage)
        ax.set_xscale("log", base=2)
        ax.set_xticks(panel["concurrency"], [str(c) for c in panel["concurrency"]])
        ax.set(title=panel["title"], xlabel="Clips in flight", ylim=(0, 105))
        ax.set_ylabel("Stage utilisation (%)" if ax.get_subplotspec().is_first_col() else "")
        ax.legend(loc="lower right", fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)


DRAW = {"throughput_curve": throughput_curve, "throughput_stages": throughput_stages}
