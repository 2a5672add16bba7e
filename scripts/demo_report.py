"""The demo's numbers and pictures: agreement of the workflows' maps with the simulated truth,
figures (maps, correlation chart, scatter plots, anomaly map) and the index.html report.

No QGIS here: GDAL/OGR, numpy, matplotlib and the plugin's own core.report / core.metrics /
core.onnx_metadata (import the checkout as `rsgeochem` first)."""
import base64
import csv
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr

from rsgeochem.core.inversion.onnx_metadata import read_metadata
from rsgeochem.core.metrics import regression_metrics
from rsgeochem.core.raster.blockio import raster_info
from rsgeochem.core.raster.lattice import lattice_offset
from rsgeochem.core.report import page

plt = page.pyplot()  # with the Agg backend page.py selects
MAX_SCATTER_POINTS = 4000  # pixels drawn in a map-vs-truth scatter plot (all are used for metrics)
SCATTER_SEED = 7
SIMULATED_NOTE = (
    'All geochemical values of the sample data set are SIMULATED (scripts/make_sample_data.py): '
    'the "true" fields are known by construction, so the maps can be checked pixel by pixel. '
    'Agreement with a simulated truth says the chain works as designed on data built to suit it; it '
    'is not evidence of accuracy on real ore deposits. By construction the RE2O3 content is expressed '
    'in the spectra (the paper\'s premise): a pixel-scale function of the reflectance carries about 83 % '
    'of the true field\'s latent variance, a 150 m non-spectral field the rest; the Cu field\'s fine '
    'detail is the image\'s PC2.')


@dataclass
class Agreement:
    """A map compared with a reference (truth raster or measured points)."""
    label: str
    reference: str
    n: int
    r2: float
    rmse: float
    bias: float

    @classmethod
    def of(cls, label, reference, measured, predicted):
        metrics = regression_metrics(measured, predicted)
        return cls(label, reference, metrics.n, metrics.r2, metrics.rmse, metrics.bias)


@dataclass
class Section:
    """One workflow's part of the report."""
    title: str
    metrics: list = field(default_factory=list)       # Agreement rows
    model_metrics: dict = field(default_factory=dict)  # 'train'/'test' -> metric dict
    figures: list = field(default_factory=list)        # (caption, png path)
    links: list = field(default_factory=list)          # (label, path of a per-algorithm report)
    notes: list = field(default_factory=list)


def read_band(path, grid_of=None):
    """Band 1 of a raster as a float64 array with NaN for nodata; resampled by cubic convolution
    onto the grid of raster `grid_of` when given (GDAL Warp, in memory)."""
    dataset = gdal.Open(str(path))
    if grid_of is not None:
        target = gdal.Open(str(grid_of))
        x0, dx, _, y0, _, dy = target.GetGeoTransform()
        bounds = (x0, y0 + dy * target.RasterYSize, x0 + dx * target.RasterXSize, y0)
        dataset = gdal.Warp('', dataset, format='MEM', outputBounds=bounds, width=target.RasterXSize,
                            height=target.RasterYSize, dstSRS=target.GetProjection(),
                            resampleAlg='cubic', dstNodata=-9999.0)
    band = dataset.GetRasterBand(1)
    values = band.ReadAsArray().astype(np.float64)
    nodata = band.GetNoDataValue()
    if nodata is not None:
        values[values == nodata] = np.nan
    values[~np.isfinite(values)] = np.nan
    return values


def raster_extent(path):
    dataset = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    return (x0, x0 + dx * dataset.RasterXSize, y0 + dy * dataset.RasterYSize, y0)


def raster_crs(path):
    dataset = gdal.Open(str(path))
    return dataset.GetProjection()


def raster_agreement(label, predicted_path, truth_path, resample=False):
    """Agreement of a map with a truth raster over the pixels valid in both (the map is resampled
    by cubic convolution onto the truth grid with `resample`, e.g. a coarse kriged grid)."""
    return Agreement.of(label, f'{Path(truth_path).name} (pixels)',
                        *truth_pairs(predicted_path, truth_path, resample))


def truth_pairs(predicted_path, truth_path, resample=False):
    """(truth, predicted) at the pixels valid in both (see raster_agreement for `resample`); a map on
    a window of the truth's pixel lattice (e.g. kriged over the samples' extent) is compared where
    both have pixels."""
    truth = read_band(truth_path)
    predicted = read_band(predicted_path, truth_path if resample else None)
    if predicted.shape != truth.shape:
        truth, predicted = common_window(truth, truth_path, predicted, predicted_path)
    valid = np.isfinite(truth) & np.isfinite(predicted)
    return truth[valid], predicted[valid]


def common_window(truth, truth_path, predicted, predicted_path):
    """The two arrays cut to the pixels both rasters cover, when they are on one pixel lattice."""
    offset = lattice_offset(raster_info(truth_path).grid, raster_info(predicted_path).grid)
    if offset is None:
        raise ValueError(f'{predicted_path} is not on the grid of {truth_path}')
    col, row = offset
    row0, col0 = max(row, 0), max(col, 0)
    row1, col1 = min(row + predicted.shape[0], truth.shape[0]), min(col + predicted.shape[1], truth.shape[1])
    return truth[row0:row1, col0:col1], predicted[row0 - row:row1 - row, col0 - col:col1 - col]


def read_points(path, value_field):
    """(x, y, value) arrays of a point layer's features with a value."""
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    rows = [(f.GetGeometryRef().GetX(), f.GetGeometryRef().GetY(), f.GetField(value_field))
            for f in layer if f.GetGeometryRef() is not None and f.GetField(value_field) is not None]
    return tuple(np.array(column, dtype=np.float64) for column in zip(*rows))


def values_at(path, x, y):
    """Raster band 1 at map coordinates (pixel that holds each point; NaN outside or nodata)."""
    values = read_band(path)
    x0, dx, _, y0, _, dy = gdal.Open(str(path)).GetGeoTransform()
    cols = np.floor((x - x0) / dx).astype(int)
    rows = np.floor((y - y0) / dy).astype(int)
    inside = (cols >= 0) & (rows >= 0) & (cols < values.shape[1]) & (rows < values.shape[0])
    out = np.full(x.shape, np.nan)
    out[inside] = values[rows[inside], cols[inside]]
    return out


def point_pairs(predicted_path, points_path, value_field):
    """(measured, predicted) at the points that fall on a valid pixel."""
    x, y, measured = read_points(points_path, value_field)
    predicted = values_at(predicted_path, x, y)
    valid = np.isfinite(predicted)
    return measured[valid], predicted[valid]


def point_agreement(label, predicted_path, points_path, value_field):
    return Agreement.of(label, f'{Path(points_path).name} ({value_field}, points)',
                        *point_pairs(predicted_path, points_path, value_field))


def baseline_notes(mapped, baseline):
    """A plain sentence when the map does not beat its baseline (as measured against the truth)."""
    scores = (f'R² {mapped.r2:.3f} for the {mapped.label} against {baseline.r2:.3f} for the '
              f'{baseline.label}')
    if mapped.r2 >= baseline.r2:
        return [f'{scores}: adding the image brings the map closer to the truth.']
    return [f'{scores}: on this data set the map does NOT beat its baseline; interpolating the samples '
            'alone reproduces the true field better than adding the image does. Read the map as a '
            'demonstration of the chain, not of a gain in accuracy.']


def model_metrics(onnx_path):
    """Train/test metrics stored in the trained model's metadata, and the model type."""
    metadata = read_metadata(onnx_path)
    return metadata.get('metrics', {}), metadata.get('model_type', '?')


def read_correlation_table(path):
    with open(path, newline='', encoding='utf-8') as handle:
        return list(csv.DictReader(handle))


# ---- figures ----------------------------------------------------------------------------------

def figure_row(count, width=4.2, height=4.0):
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), dpi=100, squeeze=False)
    return figure, axes[0]


def _save(figure, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return page.save_figure_png(figure, path)


def maps_figure(panels, path, units):
    """Maps side by side with one shared colour scale; panels: (title, raster path)."""
    arrays = [(title, read_band(raster), raster_extent(raster), raster) for title, raster in panels]
    finite = np.concatenate([a[np.isfinite(a)] for _, a, _, _ in arrays])
    low, high = np.percentile(finite, [2, 98])
    figure, axes = figure_row(len(arrays))
    for ax, (title, array, extent, raster) in zip(axes, arrays):
        image = ax.imshow(np.ma.masked_invalid(array), extent=extent, vmin=low, vmax=high, cmap='Spectral_r')
        ax.set_title(title, fontsize=10)
        page.map_frame(ax, extent, raster_crs(raster))
    figure.colorbar(image, ax=list(axes), shrink=0.8, label=units)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format='png', bbox_inches='tight')  # tight_layout ignores a shared colour bar
    plt.close(figure)
    return str(path)


def anomaly_figure(map_path, polygons_path, path, title, units):
    """The content map with the ranked high-anomaly polygons outlined and labelled."""
    figure, ax = page.new_figure(5.5, 4.6)
    values = np.ma.masked_invalid(read_band(map_path))
    low, high = np.percentile(values.compressed(), [2, 98])
    image = ax.imshow(values, extent=raster_extent(map_path), cmap='Spectral_r', vmin=low, vmax=high)
    figure.colorbar(image, ax=ax, shrink=0.8, label=units)
    dataset = ogr.Open(str(polygons_path))
    layer = dataset.GetLayer(0)
    count = 0
    for feature in layer:
        geometry = feature.GetGeometryRef()
        parts = [geometry.GetGeometryRef(i) for i in range(geometry.GetGeometryCount())]
        for ring in parts:
            points = np.array(ring.GetPoints())
            ax.plot(points[:, 0], points[:, 1], color='black', linewidth=1.0)
        rank = feature.GetField('rank')
        if rank is not None and rank <= 5:
            centre = geometry.Centroid()
            ax.annotate(feature.GetField('rank_label'), (centre.GetX(), centre.GetY()), color='black',
                        fontsize=9, fontweight='bold', ha='center')
        count += 1
    labelled = ' (ranks I-V labelled)' if count > 5 else ''
    ax.set_title(f'{title}: {count} high-anomaly area{"" if count == 1 else "s"}{labelled}', fontsize=10)
    page.map_frame(ax, raster_extent(map_path), raster_crs(map_path))
    return _save(figure, path)


def scatter_figure(pairs, path, units):
    """Predicted against reference, one panel per (title, reference, predicted) with the 1:1 line."""
    figure, axes = figure_row(len(pairs))
    rng = np.random.default_rng(SCATTER_SEED)
    for ax, (title, reference, predicted) in zip(axes, pairs):
        if reference.size > MAX_SCATTER_POINTS:
            keep = rng.choice(reference.size, MAX_SCATTER_POINTS, replace=False)
            reference, predicted = reference[keep], predicted[keep]
        ax.scatter(reference, predicted, s=4, alpha=0.4)
        low = float(min(reference.min(), predicted.min()))
        high = float(max(reference.max(), predicted.max()))
        ax.plot([low, high], [low, high], color='k', linewidth=0.8, label='1:1')
        ax.set_xlabel(f'reference ({units})')
        ax.set_ylabel(f'predicted ({units})')
        ax.set_title(title, fontsize=10)
        ax.legend(loc='upper left', fontsize=8)
    return _save(figure, path)


def correlation_figure(table_path, path, target):
    rows = [row for row in read_correlation_table(table_path) if row.get('coefficient')]
    figure, ax = page.new_figure(6.0, 3.5)
    names = [short_band_name(row['feature']) for row in rows]
    values = [float(row['coefficient']) for row in rows]
    colours = ['tab:red' if row.get('significant') == '1' else 'tab:gray' for row in rows]
    ax.bar(names, values, color=colours)
    ax.axhline(0, color='k', linewidth=0.8)
    ax.set_ylabel(f'{rows[0]["method"] if rows else ""} coefficient')
    ax.set_title(f'Correlation of {target} with the bands (red: significant, FDR 5 %)', fontsize=10)
    return _save(figure, path)


def short_band_name(field_name):
    """'B3_DOS1_surface_reflectance' -> 'B3'."""
    return field_name.split('_')[0]


# ---- report -----------------------------------------------------------------------------------

def metric_rows(section):
    rows = []
    for side in ('train', 'test'):
        values = section.model_metrics.get(side)
        if values:
            rows.append([f'model, {side} samples', 'kriged content at the samples', values.get('n'),
                         values.get('r2'), values.get('rmse'), values.get('bias')])
    rows += [[a.label, a.reference, a.n, a.r2, a.rmse, a.bias] for a in section.metrics]
    return rows


def embed_png(path, alt):
    data = base64.b64encode(Path(path).read_bytes()).decode('ascii')
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def section_html(section, index_dir):
    parts = [page.table_html(['map / model', 'compared with', 'n', 'R²', 'RMSE', 'bias'],
                             metric_rows(section))]
    parts += [page.paragraph(note, 'note') for note in section.notes]
    for caption, png in section.figures:
        parts.append(f'<figure>{embed_png(png, caption)}<figcaption>{html.escape(caption)}</figcaption>'
                     '</figure>')
    if section.links:
        items = ''.join(f'<li><a href="{html.escape(link_path(path, index_dir))}">{html.escape(label)}</a>'
                        '</li>' for label, path in section.links if Path(path).exists())
        parts.append(f'<p>Reports of the individual steps:</p><ul>{items}</ul>')
    return ''.join(parts)


def link_path(path, index_dir):
    try:
        return Path(path).resolve().relative_to(Path(index_dir).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_uri()


def write_index(path, sections, commands, elapsed_seconds):
    index_dir = Path(path).parent
    parts = [('About the data', page.paragraph(SIMULATED_NOTE, 'warning'))]
    parts += [(section.title, section_html(section, index_dir)) for section in sections]
    parts.append(('How this was made', page.paragraph(
        f'make demo ran these commands from the checkout root in {elapsed_seconds:.0f} s (environment: '
        'QGIS_PLUGINPATH, QGIS_CUSTOM_CONFIG_PATH and PYTHONPATH as in the README\'s qgis_process '
        'section):') + '<pre>' + html.escape(
        '\n'.join(commands)) + '</pre>'))
    return page.write_report(path, 'RS Geochem Inversion demo (simulated sample data)', parts)


def format_number(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return 'n/a'
    return f'{value:.3f}'


def summary_lines(sections, index_path):
    """Short plain-text summary printed at the end of `make demo`."""
    lines = ['', 'RS Geochem Inversion demo - SIMULATED sample data (see the report\'s note)']
    for section in sections:
        lines.append(f'{section.title}:')
        for side in ('train', 'test'):
            values = section.model_metrics.get(side)
            if values:
                lines.append(f'  model {side:5s}: R² {format_number(values.get("r2"))}  '
                             f'RMSE {format_number(values.get("rmse"))}  (n {values.get("n")})')
        for a in section.metrics:
            lines.append(f'  {a.label} vs {a.reference}: R² {format_number(a.r2)}  '
                         f'RMSE {format_number(a.rmse)}  (n {a.n})')
    lines.append(f'Report: {index_path}')
    return lines
