"""Comparison of two maps on one grid, block by block: the map-to-map check of Cheng et al. (2023,
rare-earth inversion from GF-2, Fig. 10), where the contents predicted at the samples are kriged and
that map is set against the kriged measured contents.

Statistics over the pixels valid in both maps (and kept by the mask), with B the reference:
Pearson r, R² = 1 − Σ(A − B)² / Σ(B − mean B)² (coefficient of determination of A as a predictor of
B, as in core.metrics.regression_metrics), RMSE, bias = mean(A − B), in the maps' units. The
difference map A − B is written as it is computed; the report's figures use a decimated read of the
rasters (GDAL's own subsampling), so memory stays bounded whatever the raster size.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..metrics import PairStats
from ..raster.blockio import (
    DEFAULT_MEMORY_MB,
    RasterReader,
    RasterWriter,
    block_windows,
    check_cancel,
    decimated_read,
    open_raster,
    raster_info,
    rows_per_block,
    tile_aligned,
)
from ..report import page

PREVIEW_SIZE = 400   # pixels along the longer side of the report's maps
SCATTER_POINTS = 20_000
# per pixel of a block: two float64 reads with their masks and the mask's read (9 bytes each),
# validity masks, the compressed pairs and PairStats' float64 temporaries (~70), the difference
# and the writer's copy
BYTES_PER_PIXEL = 3 * 9 + 4 + 72 + 12


@dataclass(frozen=True)
class MapComparison:
    n: int           # pixels compared
    r: float         # Pearson correlation
    r2: float        # 1 - SSres/SStot, B the reference
    rmse: float      # map units
    bias: float      # mean(A - B), map units
    max_abs: float   # largest |A - B|
    mean_a: float
    mean_b: float
    sd_b: float
    skipped: int     # kept pixels valid in one map only


def _check_inputs(path_a, band_a, path_b, band_b, keys):
    info_a, info_b = raster_info(path_a, keys[0]), raster_info(path_b, keys[2])
    for info, band, key in ((info_a, band_a, keys[1]), (info_b, band_b, keys[3])):
        if not 1 <= band <= info.band_count:
            raise InputError(f'band {band} does not exist ({info.band_count} bands); choose an existing '
                             'band.', key)
    if not info_a.grid.same_as(info_b.grid):
        raise InputError(
            f'the two maps are not on one grid ({info_a.grid.width}x{info_a.grid.height} px, '
            f'{info_a.grid.geotransform} against {info_b.grid.width}x{info_b.grid.height} px, '
            f'{info_b.grid.geotransform}, or another CRS); krige both onto the same reference raster '
            '(rsgeochem:kriging REFERENCE_RASTER) or align one onto the other with GDAL Warp.', keys[2])
    return info_a.grid


def compare_maps(path_a, path_b, difference_path, band_a=1, band_b=1, mask=None,
                 memory_mb=DEFAULT_MEMORY_MB, progress=None, cancel=None,
                 keys=('INPUT', 'BAND', 'REFERENCE', 'REFERENCE_BAND')):
    """Compare band `band_a` of map A with band `band_b` of reference B (same grid), write A − B to
    `difference_path` (float32, nodata where either is nodata or `mask`, a RasterReader, is 0) and
    return a MapComparison. `keys` name the parameters in errors."""
    grid = _check_inputs(path_a, band_a, path_b, band_b, keys)
    readers = RasterReader(path_a, keys[0]), RasterReader(path_b, keys[2])
    stats, either = PairStats(), 0
    windows = block_windows(grid.height, tile_aligned(rows_per_block(grid.width, BYTES_PER_PIXEL, memory_mb),
                                                      readers[0].block_height))
    with RasterWriter(difference_path, grid, 1, descriptions=['difference (map - reference)'],
                      parameter='OUTPUT') as writer:
        for index, window in enumerate(windows):
            check_cancel(cancel)
            a = readers[0].read(window, [band_a])[0]
            b = readers[1].read(window, [band_b])[0]
            keep = np.ones(a.shape, dtype=bool)
            if mask is not None:
                values = mask.read(window, [1])[0]
                keep = ~np.ma.getmaskarray(values) & (values.filled(0) != 0)
            valid_a, valid_b = ~np.ma.getmaskarray(a) & keep, ~np.ma.getmaskarray(b) & keep
            both = valid_a & valid_b
            either += int(np.count_nonzero(valid_a ^ valid_b))
            stats.add(a.data[both], b.data[both])
            writer.write(window.row, np.ma.masked_array(a.data - b.data, mask=~both))
            if progress is not None:
                progress((index + 1) / len(windows))
    result = stats.result()
    if result['n'] < 3:
        raise InputError(f'only {result["n"]} pixels hold values in both maps; the maps must overlap (check '
                         'their nodata and the mask).', keys[2])
    variance = result['reference_sd'] ** 2
    r2 = 1.0 - result['rmse'] ** 2 / variance if variance > 0 else math.nan
    return MapComparison(result['n'], result['r'], r2, result['rmse'], result['bias'], result['max_abs'],
                         result['bias'] + result['reference_mean'], result['reference_mean'],
                         result['reference_sd'], either)


def decimated(path, band, size=PREVIEW_SIZE):
    """Band `band` read at most `size` pixels along the longer side (GDAL nearest subsampling), NaN
    for nodata: bounded memory for figures of any raster."""
    dataset = open_raster(path)
    raster_band = dataset.GetRasterBand(band)
    step = max(1, math.ceil(max(dataset.RasterXSize, dataset.RasterYSize) / size))
    width, height = math.ceil(dataset.RasterXSize / step), math.ceil(dataset.RasterYSize / step)
    values = decimated_read(raster_band, width, height).astype(np.float64)
    nodata = raster_band.GetNoDataValue()
    if nodata is not None:
        values[values == nodata] = np.nan
    values[~np.isfinite(values)] = np.nan
    return values


def comparison_figures(a, b, difference, names, units):
    """HTML of the side-by-side maps (A, B on one colour scale; A − B on a symmetric diverging one)
    and the pixel scatter plot with the 1:1 line; `a`, `b`, `difference` are decimated arrays."""
    both = np.isfinite(a) & np.isfinite(b)
    low, high = (np.percentile(np.concatenate([a[both], b[both]]), [1, 99]) if both.any() else (0.0, 1.0))
    spread = np.nanpercentile(np.abs(difference), 99) if np.isfinite(difference).any() else 1.0
    spread = spread if spread > 0 else 1.0
    figure, panels = page.new_figure(13.0, 4.2, columns=3)
    label = f' ({units})' if units else ''
    for axis, values, title, options in (
            (panels[0], a, names[0], dict(cmap='viridis', vmin=low, vmax=high)),
            (panels[1], b, names[1], dict(cmap='viridis', vmin=low, vmax=high)),
            (panels[2], difference, f'{names[0]} - {names[1]}',
             dict(cmap='RdBu_r', vmin=-spread, vmax=spread))):
        image = axis.imshow(values, interpolation='nearest', **options)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        figure.colorbar(image, ax=axis, shrink=0.8, label=units)
    maps = page.figure_html(figure, 'the two maps side by side and their difference')
    figure, axis = page.new_figure(5.0, 4.6)
    x, y = b[both], a[both]
    if x.size > SCATTER_POINTS:
        pick = np.random.default_rng(0).choice(x.size, SCATTER_POINTS, replace=False)
        x, y = x[pick], y[pick]
    axis.scatter(x, y, s=3, alpha=0.3, edgecolors='none')
    ends = [float(min(x.min(), y.min())), float(max(x.max(), y.max()))] if x.size else [0.0, 1.0]
    axis.plot(ends, ends, color='k', linewidth=1, label='1:1')
    axis.set_xlabel(f'{names[1]}{label}')
    axis.set_ylabel(f'{names[0]}{label}')
    axis.legend(loc='upper left')
    scatter = page.figure_html(figure, 'pixels of the map against the reference with the 1:1 line')
    return maps, scatter


def write_comparison_report(path, comparison, paths, bands, names, units, notes=()):
    """HTML report: the statistics, the side-by-side maps and the scatter plot."""
    rows = [('pixels compared', comparison.n), ('Pearson r', comparison.r),
            ('R² (1 - SSres/SStot)', comparison.r2),
            ('RMSE', comparison.rmse), (f'bias, mean({names[0]} - {names[1]})', comparison.bias),
            ('largest |difference|', comparison.max_abs), (f'mean of {names[0]}', comparison.mean_a),
            (f'mean of {names[1]}', comparison.mean_b), (f'SD of {names[1]}', comparison.sd_b),
            ('pixels valid in one map only (left out)', comparison.skipped)]
    a, b = (decimated(p, band) for p, band in zip(paths[:2], bands))
    maps, scatter = comparison_figures(a, b, decimated(paths[2], 1), names, units)
    sources = (f'{names[0]}: {paths[0]} band {bands[0]}; {names[1]} (reference): {paths[1]} band '
               f'{bands[1]}. R² takes the reference as the truth; units are those of the maps'
               f'{" (" + units + ")" if units else ""}.')
    sections = [('Agreement', page.table_html(['statistic', 'value'], rows)
                 + page.paragraph(sources, 'note') + ''.join(page.paragraph(n, 'note') for n in notes)),
                ('Maps', maps), ('Pixels', scatter)]
    page.write_report(path, f'Map comparison: {names[0]} against {names[1]}', sections)
