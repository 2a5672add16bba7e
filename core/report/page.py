"""Self-contained HTML reports with embedded PNG plots (matplotlib, Agg backend)."""
import base64
import html
import io
import os
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402 - backend must be chosen first
from matplotlib.text import Text  # noqa: E402

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:70em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}
.warning{color:#a40}img{max-width:100%}"""


def new_figure(width=6.0, height=4.0, columns=1):
    """(figure, axes): one axes, or an array of `columns` side by side."""
    return plt.subplots(1, columns, figsize=(width, height), dpi=100)


def render_png(figure, target):
    """Lay out `figure`, save it as PNG to `target` (a path or a binary file) and close it. Every
    text is drawn as written: labels hold user strings (band descriptions, field names, units) in
    which a "$" would otherwise start matplotlib's mathtext, and an unbalanced one fail the report.
    Texts made while drawing (ticks) take the setting from the rc context."""
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    with matplotlib.rc_context({'text.parse_math': False}):
        figure.tight_layout()
        figure.savefig(target, format='png')
    plt.close(figure)


def figure_html(figure, alt=''):
    """Embed a matplotlib figure as a base64 PNG <img> and close the figure."""
    buffer = io.BytesIO()
    render_png(figure, buffer)
    data = base64.b64encode(buffer.getvalue()).decode('ascii')
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def save_figure_png(figure, path):
    render_png(figure, path)
    return str(path)


def format_value(value, digits=4):
    if isinstance(value, float):
        return f'{value:.{digits}g}'
    return html.escape(str(value))


def table_html(headers, rows, digits=4):
    head = ''.join(f'<th>{html.escape(str(h))}</th>' for h in headers)
    body = ''.join('<tr>' + ''.join(f'<td>{format_value(v, digits)}</td>' for v in row) + '</tr>'
                   for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def paragraph(text, css_class=''):
    attribute = f' class="{css_class}"' if css_class else ''
    return f'<p{attribute}>{html.escape(text)}</p>'


def write_report(path, title, sections):
    """Write an HTML page; `sections` is a list of (heading, html fragment) pairs."""
    stamp = datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')
    body = ''.join(f'<h2>{html.escape(heading)}</h2>{fragment}' for heading, fragment in sections)
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>'
            f'<p class="note">RS Geochem Inversion, {stamp}</p>{body}</body></html>')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f'.{path.name}.pid{os.getpid()}.partial')  # the page appears whole or not at all
    try:
        partial.write_text(page, encoding='utf-8')
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return str(path)
