"""Charts drawn on the server as inline SVG: bar charts of the corpus, the coverage heat map.

Every piece of text comes from the database, and so from repositories (file names,
source labels, failure messages): it is escaped here, once, with MarkupSafe, and
the result is :class:`markupsafe.Markup` so the templates insert it as it is.
Tooltips are SVG ``<title>`` elements (the browser shows them on hover, no script).
"""

from __future__ import annotations

from markupsafe import Markup, escape

from assemblage.pipeline.report import RunReport

__all__ = ["STATUS_COLOURS", "bar_chart", "heat_map"]

STATUS_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "timed_out": "#ef6c00",
    "no_binaries": "#f9a825",
    "skipped": "#9e9e9e",
    "running": "#1565c0",
    "pending": "#e0e0e0",
}
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _clip(text: str, n: int) -> str:
    """At most ``n`` characters, keeping the end (where paths and URLs differ)."""
    return text if len(text) <= n else "\u2026" + text[-(n - 1) :]


def bar_chart(title: str, items: list[tuple[str, int]], *, width: int = 640, chart_id: str = "") -> Markup:
    """A horizontal bar chart of ``(label, count)``, largest first, with the count at each bar's end."""
    items = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:40]
    label_w, bar_h, gap, top = 230, 18, 6, 28
    height = top + max(1, len(items)) * (bar_h + gap) + 8
    peak = max((n for _, n in items), default=0) or 1
    span = width - label_w - 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    if not items:
        out.append(f'<text x="0" y="{top + 14}" fill="#666">nothing yet</text>')
    for i, (label, n) in enumerate(items):
        y = top + i * (bar_h + gap)
        w = max(1, round(span * n / peak))
        out.append(
            f'<g class="bar"><title>{escape(label)}: {n}</title>'
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(_clip(label, 34))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="#3f6fb5"/>'
            f'<text x="{label_w + w + 4}" y="{y + 13}">{n}</text></g>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def heat_map(rep: RunReport, *, cell: int = 26) -> Markup:
    """Sources (rows) x configurations (columns), one square per build, coloured by status.

    Hovering a square shows the source, the configuration, the status, the failure
    reason and message; each square links to its build's page.
    """
    label_w, head_h = 200, 170
    width = label_w + max(1, len(rep.configs)) * cell + 120  # room for the last slanted label
    height = head_h + max(1, len(rep.positions)) * cell + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" id="heatmap" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        f"<title>coverage of run {rep.run_id}: source x configuration</title>",
    ]
    for j, cfg in enumerate(rep.configs):
        x = label_w + j * cell + cell // 2
        out.append(f'<text x="{x}" y="{head_h - 6}" transform="rotate(-60 {x} {head_h - 6})">{escape(cfg)}</text>')
    for i, (pos, name) in enumerate(zip(rep.positions, rep.sources)):
        y = head_h + i * cell
        out.append(
            f'<text x="{label_w - 6}" y="{y + cell // 2 + 4}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(_clip(name, 28))}</text>"
        )
        for j, cfg in enumerate(rep.configs):
            c = rep.cell(pos, cfg)
            if c is None:
                continue
            x = label_w + j * cell
            tip = f"{c.source} \u00d7 {c.config}: {c.status}"
            if c.reason:
                tip += f" ({c.reason})"
            if c.message:
                tip += f"\n{_clip(c.message, 500)}"
            if c.status == "succeeded":
                tip += f"\n{c.binaries} binar{'y' if c.binaries == 1 else 'ies'}"
            out.append(
                f'<a href="/ui/builds/{c.build_id}"><rect class="cell" data-status="{escape(c.status)}" '
                f'data-reason="{escape(c.reason or "")}" x="{x + 1}" y="{y + 1}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{STATUS_COLOURS.get(c.status, "#000")}">'
                f"<title>{escape(tip)}</title></rect></a>"
            )
    out.append("</svg>")
    return Markup("".join(out))
