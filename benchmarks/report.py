"""The benchmark's result as text: one table per section (Markdown), and JSON-ready rounding."""

from __future__ import annotations

import math
from typing import Any


def rounded(value: Any) -> Any:
    """The result with floats to 2 decimals, for reading."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 2)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _x(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"x{value:.2f}"


def _idle(data: dict[str, Any]) -> list[str]:
    n = data["idle_threads"]
    backends: dict[str, Any] = data["backends"]
    lines = [
        "",
        f"{n} idle threads: devhost's memory (VmRSS) before and after creating them"
        f" ({data['clients']} clients), median of {data['runs']} runs",
        "| backend | threads created/s | created and idle/s | RSS empty | RSS with idle"
        " | MiB per 1000 threads | VmHWM | SQLite db + wal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in backends.items():
        files = f"{row['files_mib']:.1f} MiB" if "files_mib" in row else "-"
        lines.append(
            f"| {name} | {row['threads_per_s']:.0f} | {row['started_per_s']:.0f} |"
            f" {row['rss_before_mib']:.0f} MiB |"
            f" {row['rss_after_mib']:.0f} MiB | {row['mib_per_1000']:.1f} |"
            f" {row['hwm_mib']:.0f} MiB | {files} |"
        )
    lines += [
        "",
        f"Sequential turns with {n} idle threads against none ({data['turns']} turns each side, on"
        f" fresh threads, same devhost), median of {data['runs']} runs",
        "| backend | p50 empty | p50 idle | p50 idle/empty | p95 empty | p95 idle | p95 idle/empty |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in backends.items():
        lines.append(
            f"| {name} | {_ms(row['empty_p50'])} | {_ms(row['idle_p50'])} | {_x(row['p50_ratio'])} |"
            f" {_ms(row['empty_p95'])} | {_ms(row['idle_p95'])} | {_x(row['p95_ratio'])} |"
        )
    for name, row in backends.items():
        versus = row.get("vs_memory")
        if versus:
            lines += [
                "",
                f"{name} / memory (per run, then median)",
                "| threads created/s | created and idle/s | RSS with idle | MiB per 1000 threads"
                " | p50 idle | p95 idle |",
                "| --- | --- | --- | --- | --- | --- |",
                f"| {_x(versus['threads_per_s'])} | {_x(versus['started_per_s'])} |"
                f" {_x(versus['rss_after_mib'])} |"
                f" {_x(versus['mib_per_1000'])} | {_x(versus['idle_p50'])} | {_x(versus['idle_p95'])} |",
            ]
    return lines


def table(result: dict[str, Any]) -> str:
    lines: list[str] = []
    meta = result["meta"]
    lines.append(f"benchmark of {meta['commit']} on {meta['machine']} ({meta['runs']} run(s) per figure)")
    if "latency" in result:
        lat = result["latency"]
        lines += [
            "",
            f"One turn, sequential: POST /api/threads/{{id}}/messages?wait=30 round trip "
            f"({lat['turns_per_run']} turns per run, median of {lat['runs']} runs)",
            "| backend | p50 | p95 | p99 | p50 vs memory | p95 vs memory | p99 vs memory |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in lat["backends"].items():
            ratios = [
                f"x{row[q + '_vs_memory']:.2f}" if q + "_vs_memory" in row else "x1"
                for q in ("p50", "p95", "p99")
            ]
            lines.append(
                f"| {name} | {_ms(row['p50'])} | {_ms(row['p95'])} | {_ms(row['p99'])} | "
                + " | ".join(ratios)
                + " |"
            )
    if "throughput" in result:
        tp = result["throughput"]
        lines += [
            "",
            f"Throughput ({tp['backend']}, {tp['window_s']:g} s window, median of {tp['runs']} runs)",
            "| threads at once | turns/s | round trip p50 | p95 | p99 | errors |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for n, row in tp["levels"].items():
            lines.append(
                f"| {n} | {row['turns_per_s']:.1f} | {_ms(row['p50'])} | {_ms(row['p95'])} |"
                f" {_ms(row['p99'])} | {row['errors']} |"
            )
    if "long_thread" in result:
        lt = result["long_thread"]
        points = lt["at_turn"]
        ratio_key = next((k for k in lt if k.startswith("ratio_")), None)
        lines += [
            "",
            f"Long thread ({lt['backend']}, {lt['message_bytes']} B messages; at turn k the median of"
            f" turns k-{lt['window'] - 1}..k, median of {lt['runs']} runs)",
            "| "
            + " | ".join(f"turn {k}" for k in points)
            + (" | ratio last / first |" if ratio_key else " |"),
            "| " + " | ".join("---" for _ in points) + (" | --- |" if ratio_key else " |"),
            "| "
            + " | ".join(_ms(v) for v in points.values())
            + (f" | x{lt[ratio_key]:.2f} |" if ratio_key else " |"),
        ]
        for failure in lt["failures"]:
            lines.append(f"  failed: {failure}")
    if "restart" in result:
        rs = result["restart"]
        lines += [
            "",
            f"Restart with {rs['waiting']} turns in flight ({rs['waiting_on_model']:.0f} of them on the"
            f" model; {rs['backend']}, SIGKILL, then a new devhost; from its start, median of"
            f" {rs['runs']} runs)",
            "| devhost ready | first reply | all replies | replies/s after ready |",
            "| --- | --- | --- | --- |",
            f"| {_s(rs['ready_s'])} | {_s(rs['first_reply_s'])} | {_s(rs['all_replies_s'])} |"
            f" {rs['replies_per_s']:.1f} |",
        ]
    if "idle" in result:
        lines += _idle(result["idle"])
    if "commits" in result:
        cm = result["commits"]
        lines += [
            "",
            f"Per turn on the SQLite hub ({cm['turns']} turns, counted by the hub)",
            "| SQLite commits | durable work items | orchestration | activity | entity |",
            "| --- | --- | --- | --- | --- |",
            f"| {cm['commits_per_turn']:.2f} | {cm['work_items_per_turn']:.2f} | "
            f"{cm['orchestration_work_items_per_turn']:.2f} | {cm['activity_work_items_per_turn']:.2f} | "
            f"{cm['entity_work_items_per_turn']:.2f} |",
        ]
    for name, error in result.get("errors", {}).items():
        lines.append(f"\nsection {name} failed: {error}")
    return "\n".join(lines)
