"""Server-rendered SVG charts for the statistics page: readable at a glance, no script, no library.

Pure functions from `Statistics` to SVG text (all labels escaped); safe from any thread.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from review.queries import Statistics

__all__ = ["statistics_svg"]

ALERT_COLOUR = "#9db4d0"
VIOLATION_COLOUR = "#c0392b"
FP_COLOUR = "#7f8c8d"


def _nice_max(v: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if v <= step * 5:
            return step * 5 if v > 0 else 5
    return ((v // 10000) + 1) * 10000


def _daily(per_day: Sequence[dict[str, Any]], x0: int, y0: int, w: int, h: int) -> list[str]:
    e = html.escape
    out = [
        f'<text x="{x0}" y="{y0 - 8}" class="h">每日告警与确认违规 Alerts and confirmed violations per day</text>'
    ]
    if not per_day:
        out.append(f'<text x="{x0 + 10}" y="{y0 + h // 2}" class="m">no alerts in this period</text>')
        return out
    top = _nice_max(max(int(d["alerts"]) for d in per_day))
    n = len(per_day)
    slot = w / n
    bar = max(2.0, min(28.0, slot * 0.38))
    for i in range(6):
        v = top * i // 5
        y = y0 + h - h * v / top
        out.append(
            f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="ax" text-anchor="end">{v}</text>'
        )
    label_every = max(1, n // 12)
    for i, d in enumerate(per_day):
        cx = x0 + slot * (i + 0.5)
        for j, (key, colour) in enumerate((("alerts", ALERT_COLOUR), ("violations", VIOLATION_COLOUR))):
            v = int(d[key])
            bh = h * v / top
            x = cx - bar + j * bar
            out.append(
                f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bar:.1f}" height="{bh:.1f}" '
                f'fill="{colour}"><title>{e(d["day"])} {key}: {v}</title></rect>'
            )
            if v and n <= 31:
                out.append(
                    f'<text x="{x + bar / 2:.1f}" y="{y0 + h - bh - 3:.1f}" class="v" '
                    f'text-anchor="middle">{v}</text>'
                )
        if i % label_every == 0:
            out.append(
                f'<text x="{cx:.1f}" y="{y0 + h + 16}" class="ax" text-anchor="middle">{e(d["day"][5:])}</text>'
            )
    return out


def _hbars(
    title: str, items: Sequence[dict[str, Any]], label_key: str, x0: int, y0: int, w: int, max_rows: int = 12
) -> tuple[list[str], int]:
    e = html.escape
    out = [f'<text x="{x0}" y="{y0 - 8}" class="h">{e(title)}</text>']
    items = list(items)[:max_rows]
    if not items:
        out.append(f'<text x="{x0 + 10}" y="{y0 + 16}" class="m">—</text>')
        return out, 30
    top = max(1, max(int(it["alerts"]) for it in items))
    label_w = 190
    bw = w - label_w - 60
    row_h = 22
    for i, it in enumerate(items):
        y = y0 + i * row_h
        label = str(it.get(label_key + "_name") or "")
        label = f"{it[label_key]} {label}".strip() if label and label != it[label_key] else str(it[label_key])
        a, v, fp = int(it["alerts"]), int(it["violations"]), int(it["false_positive"])
        out.append(
            f'<text x="{x0 + label_w - 8}" y="{y + 15}" class="ax" text-anchor="end">{e(label[:30])}</text>'
        )
        out.append(
            f'<rect x="{x0 + label_w}" y="{y + 3}" width="{bw * a / top:.1f}" height="16" fill="{ALERT_COLOUR}">'
            f"<title>{e(label)} alerts: {a}</title></rect>"
        )
        out.append(
            f'<rect x="{x0 + label_w}" y="{y + 3}" width="{bw * v / top:.1f}" height="16" '
            f'fill="{VIOLATION_COLOUR}"><title>{e(label)} confirmed violations: {v}</title></rect>'
        )
        if fp:
            out.append(
                f'<rect x="{x0 + label_w + bw * v / top:.1f}" y="{y + 3}" width="{bw * fp / top:.1f}" '
                f'height="16" fill="{FP_COLOUR}"><title>{e(label)} false positives: {fp}</title></rect>'
            )
        prec = "" if it["precision"] is None else f" · {it['precision'] * 100:.0f}%"
        out.append(
            f'<text x="{x0 + label_w + bw * a / top + 6:.1f}" y="{y + 15}" class="v">{v}/{a}{prec}</text>'
        )
    return out, len(items) * row_h + 10


def statistics_svg(stats: Statistics, width: int = 900) -> str:
    parts: list[str] = []
    x0 = 60
    y = 48
    parts += _daily(stats.per_day, x0, y, width - x0 - 20, 200)
    y += 200 + 72
    t = stats.totals
    parts.append(
        f'<text x="{x0}" y="{y - 20}" class="t">合计 {t["alerts"]} alerts · {t["violations"]} confirmed '
        f"violations · {t['false_positive']} false positives · {t['unreviewed']} unreviewed</text>"
    )
    for title, items, key in (
        ("按类别 Per category (violations/alerts · precision)", stats.per_category, "category"),
        ("按直播间 Per stream", stats.per_stream, "stream"),
        ("按规则 Per rule", stats.per_rule, "rule"),
    ):
        y += 14
        rows, used = _hbars(title, items, key, 10, y, width - 20)
        parts += rows
        y += used + 26
    ly, lx = 14, width - 470
    legend = (
        f'<rect x="{lx}" y="{ly - 9}" width="12" height="10" fill="{ALERT_COLOUR}"/>'
        f'<text x="{lx + 16}" y="{ly}" class="ax">alerts 告警</text>'
        f'<rect x="{lx + 110}" y="{ly - 9}" width="12" height="10" fill="{VIOLATION_COLOUR}"/>'
        f'<text x="{lx + 126}" y="{ly}" class="ax">confirmed violations 确认违规</text>'
        f'<rect x="{lx + 330}" y="{ly - 9}" width="12" height="10" fill="{FP_COLOUR}"/>'
        f'<text x="{lx + 346}" y="{ly}" class="ax">false positives 误报</text>'
    )
    style = (
        "<style>text{font-family:'Noto Sans CJK SC','Microsoft YaHei','PingFang SC','WenQuanYi Micro Hei',sans-serif;fill:#222}"
        ".h{font-size:14px;font-weight:bold}.ax{font-size:11px;fill:#444}.v{font-size:10px;fill:#222}"
        ".m{font-size:12px;fill:#888}.t{font-size:13px}.g{stroke:#e3e3e3;stroke-width:1}</style>"
    )
    height = y + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="review statistics">{style}'
        f'<rect width="100%" height="100%" fill="#fff"/>{legend}{"".join(parts)}</svg>'
    )
