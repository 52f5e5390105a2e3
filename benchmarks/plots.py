"""PNG plots of a benchmark result (matplotlib, a benchmark-only dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(result: dict[str, Any], folder: Path, caption: str) -> list[Path]:
    """Latency against concurrency, and latency against turn number; returns the files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (requirements-dev.txt): no plots")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    throughput = result.get("throughput")
    if throughput:
        levels = sorted(int(n) for n in throughput["levels"])
        rows = [throughput["levels"][str(n)] for n in levels]
        fig, left = plt.subplots(figsize=(7, 4.2), dpi=110)
        left.plot(levels, [r["p50"] for r in rows], "o-", label="round trip p50")
        left.plot(levels, [r["p95"] for r in rows], "s--", label="round trip p95")
        left.set_xscale("log")
        left.set_xticks(levels, [str(n) for n in levels])
        left.set_xlabel("threads sending at once")
        left.set_ylabel("POST ?wait round trip (ms)")
        right = left.twinx()
        right.plot(levels, [r["turns_per_s"] for r in rows], "^:", color="tab:green", label="turns/s")
        right.set_ylabel("turns per second")
        handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
        left.legend(handles, labels, loc="upper left", fontsize=8)
        left.set_title(f"Latency and throughput against concurrency ({throughput['backend']})", fontsize=10)
        fig.text(0.01, 0.01, caption, fontsize=7, color="gray")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        path = folder / "benchmark-concurrency.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    long = result.get("long_thread")
    if long and long.get("series"):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for i, series in enumerate(long["series"]):
            turns = list(range(1, len(series) + 1))
            ax.plot(turns, series, ".", markersize=2, alpha=0.35, label=f"run {i + 1}, each turn")
            window = 25
            smooth = [
                sorted(series[max(0, j - window) : j + 1])[len(series[max(0, j - window) : j + 1]) // 2]
                for j in range(len(series))
            ]
            ax.plot(turns, smooth, "-", linewidth=1.2, label=f"run {i + 1}, running median")
        ax.set_xscale("log")
        ax.set_xlabel("turn number")
        ax.set_ylabel("POST ?wait round trip (ms)")
        ax.set_ylim(bottom=0)
        ax.set_title(
            f"Latency against turn number ({long['backend']}, {long['message_bytes']} B messages)",
            fontsize=10,
        )
        ax.legend(fontsize=7, loc="upper left")
        fig.text(0.01, 0.01, caption, fontsize=7, color="gray")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        path = folder / "benchmark-long-thread.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
