"""Small charts for the report, drawn as inline SVG.

Inline SVG needs no script, no external file and no style attribute, so the report's strict
Content-Security-Policy still holds; every label is escaped.

>>> svg = histogram([0.1, 0.5, 0.55, 0.9], lo=0, hi=1, title="Item scores")
>>> svg.startswith("<svg") and svg.count("<rect") == 10 + 1
True
>>> "&lt;b&gt;" in hbars([("<b>", 1.0)], hi=2, title="x")
True
"""

from __future__ import annotations

from html import escape
from typing import Sequence

__all__ = ["histogram", "hbars", "stacked"]

_W = 680
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'
_OK, _BAD, _BAR, _GRID, _INK = "#2f855a", "#c53030", "#3b6fb6", "#d9dee5", "#333"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _frame(height: int, title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" width="{_W}" height="{height}" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
        f'<text x="0" y="14" {_FONT} font-weight="bold" fill="{_INK}">{_e(title)}</text>{body}</svg>'
    )


def histogram(values: Sequence[float], *, lo: float, hi: float, title: str, bins: int = 10) -> str:
    """The distribution of ``values`` over ``[lo, hi]`` in ``bins`` equal bins."""
    counts = [0] * bins
    span = (hi - lo) or 1.0
    for v in values:
        counts[min(bins - 1, max(0, int((float(v) - lo) / span * bins)))] += 1
    top = max(counts) or 1
    left, width, base, height = 40, _W - 50, 190, 150
    step = width / bins
    parts = [f'<rect x="{left}" y="{base - height}" width="{width}" height="{height}" fill="none" stroke="{_GRID}"/>']
    for i, n in enumerate(counts):
        h = height * n / top
        x = left + i * step
        parts.append(f'<rect x="{x + 1:.1f}" y="{base - h:.1f}" width="{step - 2:.1f}" height="{h:.1f}" fill="{_BAR}">'
                     f"<title>{_e(f'{lo + i * span / bins:.3g}–{lo + (i + 1) * span / bins:.3g}: {n}')}</title></rect>")
        if n:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" {_FONT} fill="{_INK}">{n}</text>')
    for i in range(0, bins + 1, max(1, bins // 5)):
        x = left + i * step
        parts.append(f'<text x="{x:.1f}" y="{base + 14}" text-anchor="middle" {_FONT} fill="{_INK}">{lo + i * span / bins:.3g}</text>')
    parts.append(f'<text x="{left}" y="{base + 30}" {_FONT} fill="{_INK}">{len(values)} items</text>')
    return _frame(base + 36, title, "".join(parts))


def hbars(rows: Sequence[tuple[str, float]], *, hi: float, title: str, lo: float = 0.0, unit: str = "",
          whiskers: Sequence[float] | None = None) -> str:
    """One horizontal bar per (label, value) on ``[lo, hi]``; ``whiskers`` draws a second value
    (a 90th percentile) as a line past each bar."""
    label_w, bar_w, row_h, top = 170, _W - 380, 22, 26
    span = (hi - lo) or 1.0
    parts = []
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        w = bar_w * max(0.0, min(1.0, (float(value) - lo) / span))
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" {_FONT} fill="{_INK}">{_e(label[:28])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 6}" fill="{_GRID}"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{_BAR}"/>')
        text = f"{value:.3g}{unit}"
        if whiskers is not None and i < len(whiskers):
            wx = label_w + bar_w * max(0.0, min(1.0, (float(whiskers[i]) - lo) / span))
            parts.append(f'<line x1="{label_w + w:.1f}" y1="{y + 11}" x2="{wx:.1f}" y2="{y + 11}" stroke="{_INK}"/>')
            parts.append(f'<line x1="{wx:.1f}" y1="{y + 6}" x2="{wx:.1f}" y2="{y + 16}" stroke="{_INK}"/>')
            text += f" (p90 {whiskers[i]:.3g}{unit})"
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 14}" {_FONT} fill="{_INK}">{_e(text)}</text>')
    return _frame(top + len(rows) * row_h + 6, title, "".join(parts))


def stacked(rows: Sequence[tuple[str, int, int]], *, title: str, labels: tuple[str, str] = ("ok", "failed")) -> str:
    """One bar per (label, good, bad), split into its good and bad share."""
    label_w, bar_w, row_h, top = 170, _W - 380, 22, 26
    parts = []
    for i, (label, good, bad) in enumerate(rows):
        y = top + i * row_h
        total = good + bad
        w = bar_w * good / total if total else 0.0
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" {_FONT} fill="{_INK}">{_e(label[:28])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{_OK}"/>')
        parts.append(f'<rect x="{label_w + w:.1f}" y="{y + 3}" width="{bar_w - w:.1f}" height="{row_h - 6}" fill="{_BAD if total else _GRID}"/>')
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 14}" {_FONT} fill="{_INK}">'
                     f"{_e(f'{good} {labels[0]}, {bad} {labels[1]}')}</text>")
    return _frame(top + len(rows) * row_h + 6, title, "".join(parts))
