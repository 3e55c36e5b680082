"""Small SVG charts drawn on the server for the hall dashboard.

Every piece of text goes through xml.sax.saxutils (text and attribute escaping), so a hall or item
name can never become markup. Each chart is an accessible image: role="img", a <title> and a <desc>
that says in words what the bars show. Colours are classes the page's stylesheet may restyle (适老模式),
with fill attributes as the default for the SVG on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

SERIES_FILLS = ("#0b57b7", "#17663a", "#a4161a", "#8a5a00")
FONT = "Noto Sans CJK SC, PingFang SC, Microsoft YaHei, sans-serif"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _nice_step(top: float, ticks: int) -> float:
    """A round tick step (1, 2 or 5 times a power of ten, at least 1) so that `ticks` steps reach `top`."""
    raw = max(top / ticks, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if step * power >= raw:
            return float(step * power)
    return float(10 * power)


def _open(key: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label={quoteattr(title)} '
        f'aria-describedby={quoteattr(key + "-desc")} font-family={quoteattr(FONT)} font-size="14">',
        f"<title id={quoteattr(key + '-title')}>{escape(title)}</title>",
        f"<desc id={quoteattr(key + '-desc')}>{escape(desc)}</desc>",
    ]


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "label", size: int | None = None,
          extra: str = "") -> str:
    font = f' font-size="{size}"' if size else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}" fill="#1b1f24"{font}{extra}>'
            f"{escape(text)}</text>")


def bar_chart(*, key: str, title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
              width: int = 1800, height: int = 300, empty: str = "本期间没有数据") -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    total = [sum(values) for _, values in series]
    desc = (title + "：" + "，".join(f"{name}共 {_num(t)}" for (name, _), t in zip(series, total, strict=True))
            + (f"（{categories[0]} 至 {categories[-1]}，共 {len(categories)} 项）" if categories else ""))
    out = _open(key, title, desc, width, height)
    left, right, top, bottom = 56, 16, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    # Legend along the top.
    x = left
    for i, (name, _) in enumerate(series):
        out.append(f'<rect x="{x}" y="10" width="14" height="14" class="s{i}" fill="{SERIES_FILLS[i % 4]}"/>')
        out.append(_text(x + 20, 22, name))
        x += 32 + 16 * len(name)
    top_value = max((v for _, values in series for v in values), default=0)
    if not categories or top_value <= 0:
        out.append(_text(width / 2, top + plot_h / 2, empty, anchor="middle", cls="muted"))
        out.append("</svg>")
        return "\n".join(out)
    step = _nice_step(top_value, 4)
    axis_max = step * 4
    for i in range(5):
        value = step * i
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid" '
                   f'stroke="#c9d1dc" stroke-width="1"/>')
        out.append(_text(left - 8, y + 5, _num(round(value, 1)), anchor="end", cls="muted"))
    group_w = plot_w / len(categories)
    bar_w = max(1.0, min(28.0, group_w * 0.8 / max(1, len(series))))
    every = max(1, math.ceil(len(categories) / 31))
    for c, category in enumerate(categories):
        gx = left + c * group_w + (group_w - bar_w * len(series)) / 2
        for s, (name, values) in enumerate(series):
            v = values[c]
            h = plot_h * v / axis_max
            out.append(f'<rect x="{gx + s * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                       f'height="{h:.1f}" class="s{s}" fill="{SERIES_FILLS[s % 4]}">'
                       f"<title>{escape(f'{category} {name}：{_num(v)}')}</title></rect>")
        if c % every == 0:
            out.append(_text(left + c * group_w + group_w / 2, height - bottom + 22, category, anchor="middle"))
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" class="axis" '
               f'stroke="#1b1f24" stroke-width="2"/>')
    out.append("</svg>")
    return "\n".join(out)


def hbar_chart(*, key: str, title: str, rows: Sequence[tuple[str, float, str]], width: int = 560,
               fmt: Callable[[float], str] = _num, empty: str = "本期间没有数据") -> str:
    """Horizontal bars, one per row (label, value, class); the class picks the colour."""
    row_h, top, label_w, value_w = 40, 16, 150, 70
    height = top * 2 + row_h * max(1, len(rows))
    desc = title + "：" + ("，".join(f"{label} {fmt(value)}" for label, value, _ in rows) if rows else empty)
    out = _open(key, title, desc, width, height)
    top_value = max((v for _, v, _ in rows), default=0)
    if not rows or top_value <= 0:
        out.append(_text(width / 2, height / 2 + 5, empty, anchor="middle", cls="muted"))
        out.append("</svg>")
        return "\n".join(out)
    plot_w = width - label_w - value_w
    fills = {"lv-none": "#17663a", "lv-yellow": "#c99700", "lv-red": "#a4161a"}
    for i, (label, value, cls) in enumerate(rows):
        y = top + i * row_h
        w = plot_w * value / top_value
        out.append(_text(label_w - 10, y + row_h / 2 + 5, label, anchor="end"))
        out.append(f'<rect x="{label_w}" y="{y + 6}" width="{w:.1f}" height="{row_h - 12}" class={quoteattr(cls)} '
                   f'fill="{fills.get(cls, SERIES_FILLS[0])}"/>')
        out.append(_text(label_w + w + 8, y + row_h / 2 + 5, fmt(value), cls="value"))
    out.append("</svg>")
    return "\n".join(out)
