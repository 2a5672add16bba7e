"""Self-contained HTML reports with embedded PNG plots (matplotlib, Agg backend)."""
import base64
import html
import io
import math
import os
from datetime import UTC, datetime
from pathlib import Path

from osgeo import osr

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:70em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}
.warning{color:#a40}img{max-width:100%}pre{white-space:pre-wrap;overflow-wrap:anywhere}"""


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use: loading the plugin (every
    qgis_process call, `list` and `help` included) would otherwise pay ~0.5 CPU s and ~90 MB."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def new_figure(width=6.0, height=4.0, columns=1):
    """(figure, axes): one axes, or an array of `columns` side by side."""
    return pyplot().subplots(1, columns, figsize=(width, height), dpi=100)


def render_png(figure, target):
    """Lay out `figure`, save it as PNG to `target` (a path or a binary file) and close it. Every
    text is drawn as written: labels hold user strings (band descriptions, field names, units) in
    which a "$" would otherwise start matplotlib's mathtext, and an unbalanced one fail the report.
    Texts made while drawing (ticks) take the setting from the rc context."""
    import matplotlib
    from matplotlib.text import Text
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    with matplotlib.rc_context({'text.parse_math': False}):
        figure.tight_layout()
        figure.savefig(target, format='png')
    pyplot().close(figure)
def scale_length(span):
    """A round scale-bar length (1, 2 or 5 × a power of ten) of at most `span`."""
    power = 10.0 ** math.floor(math.log10(span))
    return max(step * power for step in (1, 2, 5) if step * power <= span)


def map_frame(axes, extent, crs_wkt=''):
    """Coordinates along the axes of a map drawn with imshow(extent=(left, right, bottom, top)), and a
    scale bar when the CRS is projected (a bar in degrees would mislead)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
    axes.ticklabel_format(useOffset=False, style='plain')
    axes.tick_params(labelsize=7)
    axes.set_xlim(extent[0], extent[1])
    axes.set_ylim(extent[2], extent[3])
    reference = osr.SpatialReference()
    if not crs_wkt or reference.ImportFromWkt(crs_wkt) != 0 or not reference.IsProjected():
        return
    metres = reference.GetLinearUnits()
    length = scale_length(abs(extent[1] - extent[0]) / 4)
    kilometres = length * metres >= 1000 and metres == 1.0
    label = f'{length / 1000:g} km' if kilometres else f'{length:g} {reference.GetLinearUnitsName()}'
    label = label.replace('metre', 'm')
    axes.add_artist(AnchoredSizeBar(axes.transData, length, label, 'lower right', pad=0.4, borderpad=0.6,
                                    sep=3, frameon=True, size_vertical=abs(extent[3] - extent[2]) / 150,
                                    fontproperties={'size': 7}))


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
