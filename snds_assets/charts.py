"""Charts for the readable reports: inline SVG, so that an HTML report is one self-contained file (no script,
no CDN) that opens straight from the lake."""
from __future__ import annotations

import html


def number(value: int | None) -> str:
    """A count as the reports print it: thin spaces between thousands, a dash when unknown."""
    return "—" if value is None else f"{value:,}".replace(",", "\u202f")


def bar_chart(title: str, items: list[tuple[str, list[tuple[int, str]]]], legend: list[tuple[str, str]]) -> str:
    """A horizontal bar chart; each item is a label and stacked (value, colour) segments, with a legend."""
    e = html.escape
    if not items:
        return f"<p class=\"muted\">{e(title)}: nothing to show.</p>"
    label_w, bar_w, row_h, top = 170, 460, 22, 30
    biggest = max(sum(v for v, _ in segs) for _, segs in items) or 1
    height = top + row_h * len(items) + 10
    parts = [f'<svg role="img" aria-label="{e(title)}" width="{label_w + bar_w + 110}" height="{height}" '
             f'viewBox="0 0 {label_w + bar_w + 110} {height}" style="font:12px sans-serif">',
             f'<text x="0" y="14" font-weight="bold">{e(title)}</text>']
    x_legend = label_w
    for text, colour in legend:
        parts.append(f'<rect x="{x_legend}" y="19" width="10" height="8" fill="{colour}"/>'
                     f'<text x="{x_legend + 14}" y="27">{e(text)}</text>')
        x_legend += 14 + 7 * len(text) + 16
    for i, (label, segs) in enumerate(items):
        y = top + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{e(label)}</text>')
        x = float(label_w)
        for value, colour in segs:
            width = bar_w * value / biggest
            if width > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(width, 1):.1f}" height="{row_h - 8}" fill="{colour}"/>')
            x += width
        total = sum(v for v, _ in segs)
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 14}">{number(total)}</text>')
    parts.append("</svg>")
    return "<p>" + "".join(parts) + "</p>"
