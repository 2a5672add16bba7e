"""High-anomaly areas of a content raster: block-wise statistics, thresholds, ranked polygons.

Statistics come from two block-wise passes: exact count, mean, SD, min and max (Chan et al. 1979
pairwise update of mean and sum of squares), then histograms over [min, max] (linear, for median,
MAD and percentiles) and over log10 of the positive values (for the concentration-area curve).
Histogram quantiles are exact to one bin width = (max - min) / bins.

Polygons: a 0/1 class raster is written block by block, then gdal.Polygonize turns the 1-pixels
into polygons (4-connected). Polygonize works scanline by scanline, so memory stays bounded,
whereas scipy.ndimage.label would need the whole raster in memory. Per-polygon pixel count, mean
and max come from a block-wise pass that rasterises the polygon ids of each block in memory
(exact: the polygons follow pixel edges) next to its values.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from osgeo import gdal, ogr, osr
from scipy import ndimage

from ..errors import InputError
from ..raster.blockio import (
    RasterReader,
    RasterWriter,
    check_cancel,
    decimated_read,
    raster_info,
    read_blocks,
)
from ..raster.scratch import scratch_folder
from ..report import page
from .fractal import ca_figure_html

gdal.UseExceptions()
ogr.UseExceptions()

MAD_SCALE = 1.4826    # MAD of a normal distribution = 0.6745 SD (Reimann, Filzmoser & Garrett 2005)
MAX_K = 10.0
MAP_PIXELS = 600      # longest side of the report's quicklook map


def stage(progress, start, end):
    """progress(fraction) for one stage mapped onto start..end of the whole run."""
    if progress is None:
        return None
    return lambda fraction: progress(start + (end - start) * fraction)


class ValueSource:
    """Reads one band of the content raster block-wise with an optional exclusion mask raster
    (0 = masked, other values keep, nodata masked); masked pixels come back masked."""

    def __init__(self, path, band, mask_path=None, memory_mb=256, keys=('INPUT', 'BAND', 'MASK')):
        self.path, self.band, self.memory_mb = path, band, memory_mb
        self.input_key, band_key, mask_key = keys
        self.info = raster_info(path, self.input_key)
        if not 1 <= band <= self.info.band_count:
            raise InputError(f'band {band} does not exist; the raster has {self.info.band_count} band(s).',
                             band_key)
        self.mask = None
        if mask_path:
            self.mask = RasterReader(mask_path, mask_key)
            if not self.mask.info.grid.same_as(self.info.grid):
                raise InputError('the mask raster must have the same size, pixel grid and CRS as the '
                                 'content raster; align it first (e.g. GDAL Warp/"Align rasters").',
                                 mask_key)

    @property
    def pixel_area(self):
        return self.info.grid.pixel_width * self.info.grid.pixel_height

    def blocks(self, progress=None, cancel=None, extra_bytes_per_pixel=32, halo=0):
        """(window, masked values) row blocks, with `halo` rows read around each (see blockio)."""
        for window, block in read_blocks(self.path, [self.band], self.memory_mb, halo=halo, cancel=cancel,
                                         progress=progress, parameter=self.input_key,
                                         extra_bytes_per_pixel=extra_bytes_per_pixel + 9):
            values = block[0]
            if self.mask is not None:
                keep = self.mask.read(window, [1])[0]
                values = np.ma.masked_where(np.ma.getmaskarray(keep) | (keep.filled(0) == 0), values)
            yield window, values


@dataclass
class Statistics:
    count: int
    mean: float
    sd: float              # sample SD (n - 1)
    minimum: float
    maximum: float
    edges: np.ndarray      # linear histogram over [minimum, maximum]
    counts: np.ndarray
    log_edges: np.ndarray  # log10 histogram of the positive values (None without positives)
    log_counts: np.ndarray
    pixel_area: float

    @property
    def bin_width(self):
        return self.edges[1] - self.edges[0]

    def quantile(self, fraction):
        """Value below which `fraction` of the pixels lie (linear within the bin)."""
        cumulative = np.concatenate([[0], np.cumsum(self.counts)]) / self.count
        return float(np.interp(fraction, cumulative, self.edges))

    def median(self):
        return self.quantile(0.5)

    def mad(self):
        """Scaled median absolute deviation 1.4826 median(|x - median|) from the histogram."""
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        deviation = np.abs(centres - self.median())
        order = np.argsort(deviation)
        cumulative = np.cumsum(self.counts[order])
        return MAD_SCALE * float(deviation[order][np.searchsorted(cumulative, self.count / 2)])


@dataclass(frozen=True)
class Moments:
    """Exact count, mean, sum of squared deviations, min, max and smallest positive value."""
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    low_positive: float = math.inf

    def merge(self, other):
        """Moments of both parts: pairwise combination of means and sums of squared deviations
        (Chan, Golub & LeVeque 1979)."""
        if other.count == 0:
            return self
        total = self.count + other.count
        delta = other.mean - self.mean
        return Moments(total, self.mean + delta * other.count / total,
                       self.m2 + (other.m2 + delta * delta * self.count * other.count / total),
                       min(self.low, other.low), max(self.high, other.high),
                       min(self.low_positive, other.low_positive))


def moments(source, progress=None, cancel=None):
    """Moments of the valid pixels in one block-wise pass."""
    total = Moments()
    for _, values in source.blocks(progress, cancel):
        data = values.compressed()
        if data.size == 0:
            continue
        block_mean = float(data.mean())
        positive = data[data > 0]
        total = total.merge(Moments(data.size, block_mean, float(((data - block_mean) ** 2).sum()),
                                    float(data.min()), float(data.max()),
                                    float(positive.min()) if positive.size else math.inf))
    return total


def check_moments(total, parameter):
    if total.count == 0:
        raise InputError('the raster has no valid pixels (nodata everywhere, or everything masked); '
                         'choose another band, raster or mask.', parameter)
    if total.high <= total.low:
        raise InputError(f'the raster is constant ({total.low:g}) where valid: no anomaly to find; choose '
                         'another raster or BAND.', parameter)


def log_range(total):
    """(low, high) of the log10 histogram of the positive values, None without positives."""
    if not math.isfinite(total.low_positive):
        return None
    low, high = math.log10(total.low_positive), math.log10(total.high)
    return (low, high) if high > low else (low, low + 1e-12)


def histograms(source, total, bins, progress=None, cancel=None):
    """(counts, log counts or None): `bins` bins over the moments' [low, high] and over log_range."""
    counts = np.zeros(bins, dtype=np.int64)
    logs = log_range(total)
    log_counts = np.zeros(bins, dtype=np.int64) if logs is not None else None
    for _, values in source.blocks(progress, cancel):
        data = values.compressed()
        counts += np.histogram(data, bins, (total.low, total.high))[0]
        if log_counts is not None:
            log_counts += np.histogram(np.log10(data[data > 0]), bins, logs)[0]
    return counts, log_counts


def statistics_of(total, counts, log_counts, pixel_area):
    logs, bins = log_range(total), len(counts)
    return Statistics(total.count, total.mean, math.sqrt(total.m2 / (total.count - 1)) if total.count > 1
                      else 0.0, total.low, total.high, np.linspace(total.low, total.high, bins + 1), counts,
                      np.linspace(*logs, bins + 1) if log_counts is not None else None, log_counts,
                      pixel_area)


def raster_statistics(source, bins=10000, progress=None, cancel=None):
    """Statistics of the unmasked valid pixels (two block-wise passes)."""
    total = moments(source, stage(progress, 0, 0.5), cancel)
    check_moments(total, source.input_key)
    counts, log_counts = histograms(source, total, bins, stage(progress, 0.5, 1.0), cancel)
    return statistics_of(total, counts, log_counts, source.pixel_area)


def check_k(k, parameter):
    if not (math.isfinite(k) and 0 <= k <= MAX_K):
        raise InputError(f'k must be between 0 and {MAX_K:g}, not {k:g}.', parameter)


def mean_sd_threshold(statistics, k, parameter=None):
    """Classical geochemical threshold mean + k SD (Hawkes & Webb 1962)."""
    check_k(k, parameter)
    return statistics.mean + k * statistics.sd


def median_mad_threshold(statistics, k, parameter=None):
    """Robust threshold median + k MAD, MAD scaled by 1.4826 (Reimann et al. 2005)."""
    check_k(k, parameter)
    return statistics.median() + k * statistics.mad()


def percentile_threshold(statistics, percent, parameter=None):
    if not (math.isfinite(percent) and 0 < percent < 100):
        raise InputError(f'the percentile must be between 0 and 100 (exclusive), not {percent:g}.',
                         parameter)
    return statistics.quantile(percent / 100)


@dataclass
class Anomaly:
    rank: int
    label: str            # Roman numeral of the rank
    pixels: int
    area: float           # map units^2
    mean: float
    maximum: float
    score: float          # mean x area, the ranking key
    centroid: tuple       # (x, y) of the pixel centres
    wkb: bytes            # polygon geometry (with holes) in the raster's CRS


def roman(number):
    """Roman numeral of 1..3999 (Arabic digits beyond)."""
    if not 0 < number < 4000:
        return str(number)
    digits = ((1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'), (50, 'L'),
              (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I'))
    text = ''
    for value, symbol in digits:
        count, number = divmod(number, value)
        text += symbol * count
    return text


def write_classes(source, threshold, path, progress=None, cancel=None):
    """Byte raster: 1 where the unmasked value >= threshold, 0 (nodata) elsewhere."""
    with RasterWriter(path, source.info.grid, 1, nodata=0, data_type=gdal.GDT_Byte) as writer:
        for window, values in source.blocks(progress, cancel, extra_bytes_per_pixel=10):
            writer.write(window.row, (values.filled(-np.inf) >= threshold).astype(np.uint8))


def polygonize(class_path, gpkg_path, crs_wkt):
    """gdal.Polygonize of the 1-pixels (4-connected) into a GeoPackage layer; returns its name."""
    classes = gdal.Open(str(class_path))
    band = classes.GetRasterBand(1)
    dataset = ogr.GetDriverByName('GPKG').CreateDataSource(str(gpkg_path))
    srs = osr.SpatialReference(wkt=crs_wkt) if crs_wkt else None
    layer = dataset.CreateLayer('anomalies', srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn('class', ogr.OFTInteger))
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0)
    dataset = None  # noqa: F841 - flushes and closes the GeoPackage
    return 'anomalies'


def polygon_statistics(source, gpkg_path, layer_name, min_area=0.0, progress=None, cancel=None):
    """pid -> [pixels, sum, max, sum x, sum y] of the polygons of at least `min_area` map units² (a
    hair less, for rounding), accumulated block-wise: each block's polygon ids are rasterised in
    memory (exact: the polygons follow pixel edges), so memory stays that of a block and GDAL's
    cache is never filled with a raster-sized id image."""
    polygons = ogr.Open(str(gpkg_path))
    where = f' WHERE ST_Area(geom) >= {min_area * (1 - 1e-9)!r}' if min_area > 0 else ''
    try:
        layer = polygons.ExecuteSQL(f'SELECT fid + 0 AS pid, geom FROM "{layer_name}"{where}')
    except RuntimeError:  # a GDAL without the GeoPackage's ST_Area: every polygon, kept by area later
        layer = polygons.ExecuteSQL(f'SELECT fid + 0 AS pid, geom FROM "{layer_name}"')
    grid = source.info.grid
    table = {}
    try:
        if not layer.GetFeatureCount():  # no polygon of that size: no pass over the raster
            return table
        for window, values in source.blocks(progress, cancel, extra_bytes_per_pixel=52):
            ids = _block_ids(layer, grid, window)
            inside = ids > 0
            if not inside.any():
                continue
            xs, ys = grid.pixel_centres(window.row, window.rows)
            labels = ids[inside]
            data = values.filled(np.nan)[inside]
            rows, cols = np.nonzero(inside)
            unique = np.unique(labels)
            sums = ndimage.sum_labels(data, labels, unique)
            maxima = ndimage.maximum(data, labels, unique)
            counts = ndimage.sum_labels(np.ones_like(data), labels, unique)
            sum_x = ndimage.sum_labels(xs[cols], labels, unique)
            sum_y = ndimage.sum_labels(ys[rows], labels, unique)
            for pid, n, total, peak, sx, sy in zip(unique, counts, sums, maxima, sum_x, sum_y):
                entry = table.setdefault(int(pid), [0, 0.0, -math.inf, 0.0, 0.0])
                entry[0] += int(n)
                entry[1] += float(total)
                entry[2] = max(entry[2], float(peak))
                entry[3] += float(sx)
                entry[4] += float(sy)
    finally:
        polygons.ReleaseResultSet(layer)
    return table


def _block_ids(layer, grid, window):
    """Polygon ids (pid) burnt onto the block's rows of the grid, 0 outside polygons."""
    x0, dx, _, y0, _, dy = grid.geotransform
    block = gdal.GetDriverByName('MEM').Create('', grid.width, window.rows, 1, gdal.GDT_Int32)
    block.SetGeoTransform((x0, dx, 0.0, y0 + dy * window.row, 0.0, dy))
    xmin, xmax = sorted((x0, x0 + dx * grid.width))
    ymin, ymax = sorted((y0 + dy * window.row, y0 + dy * (window.row + window.rows)))
    layer.SetSpatialFilterRect(xmin, ymin, xmax, ymax)
    gdal.RasterizeLayer(block, [1], layer, options=['ATTRIBUTE=pid'])
    return block.GetRasterBand(1).ReadAsArray()


def anomaly_polygons(source, threshold, min_area=0.0, progress=None, cancel=None, content=None):
    """Connected areas (4-connected pixels) with value >= threshold, at least `min_area` map
    units^2, ranked I, II, ... by mean content x area (largest first). Pixel count, mean and max
    are those of `content` (a ValueSource on the same grid, e.g. the map before smoothing;
    default `source` itself)."""
    with scratch_folder('rsgeochem-anomalies') as work:
        work = Path(work)
        write_classes(source, threshold, work / 'classes.tif', stage(progress, 0, 0.35), cancel)
        check_cancel(cancel)
        layer_name = polygonize(work / 'classes.tif', work / 'polygons.gpkg', source.info.grid.crs_wkt)
        if progress is not None:
            progress(0.5)
        check_cancel(cancel)
        table = polygon_statistics(content or source, work / 'polygons.gpkg', layer_name, min_area,
                                   stage(progress, 0.6, 0.95), cancel)
        kept = []
        for pid, (pixels, total, peak, sx, sy) in table.items():
            area = pixels * source.pixel_area
            if area >= min_area:
                mean = total / pixels
                kept.append((mean * area, pid, pixels, area, mean, peak, (sx / pixels, sy / pixels)))
        kept.sort(key=lambda item: (-item[0], item[1]))
        dataset = ogr.Open(str(work / 'polygons.gpkg'))
        layer = dataset.GetLayerByName(layer_name)
        anomalies = []
        for rank, (score, pid, pixels, area, mean, peak, centroid) in enumerate(kept, start=1):
            check_cancel(cancel)
            feature = layer.GetFeature(pid)  # kept: the geometry reference dies with the feature
            wkb = bytes(feature.GetGeometryRef().ExportToWkb())
            anomalies.append(Anomaly(rank, roman(rank), pixels, area, mean, peak, score, centroid, wkb))
        dataset = None  # noqa: F841 - closes the GeoPackage before the folder is removed
    return anomalies


def quicklook(source, max_pixels=MAP_PIXELS):
    """Decimated (nearest) read of the band for the report map, masked where invalid or masked;
    memory bounded by max_pixels^2 whatever the raster size."""
    grid = source.info.grid
    scale = max(grid.width, grid.height) / max_pixels
    width, height = (max(1, round(grid.width / scale)), max(1, round(grid.height / scale))) \
        if scale > 1 else (grid.width, grid.height)
    dataset = gdal.Open(source.path)
    band = dataset.GetRasterBand(source.band)
    values = decimated_read(band, width, height, source.input_key).astype(np.float64)
    invalid = ~np.isfinite(values)
    if band.GetNoDataValue() is not None:
        invalid |= values == band.GetNoDataValue()
    if source.mask is not None:
        keep = source.mask.dataset.GetRasterBand(1)
        keep_values = decimated_read(keep, width, height, source.mask.parameter)
        invalid |= keep_values == 0
        if keep.GetNoDataValue() is not None:
            invalid |= keep_values == keep.GetNoDataValue()
    return np.ma.MaskedArray(values, invalid)


def histogram_html(statistics, threshold, units):
    """Histogram (rebinned to about 80 bars) with the threshold marked."""
    factor = max(1, len(statistics.counts) // 80)
    usable = len(statistics.counts) // factor * factor
    counts = statistics.counts[:usable].reshape(-1, factor).sum(axis=1)
    edges = statistics.edges[:usable + 1:factor]
    figure, axes = page.new_figure(6.0, 3.6)
    axes.stairs(counts, edges, fill=True, color='0.6')
    axes.axvline(threshold, color='red', linestyle='--', label=f'threshold {threshold:.4g}')
    axes.set_xlabel(f'content {units}'.strip())
    axes.set_ylabel('pixels')
    axes.legend()
    return page.figure_html(figure, 'histogram')


def exterior_ring(wkb):
    """(points, 2) array of a polygon's exterior ring."""
    polygon = ogr.CreateGeometryFromWkb(wkb)  # kept alive: the ring reference dies with it
    return np.array(polygon.GetGeometryRef(0).GetPoints())[:, :2]


def map_html(source, anomalies, labelled=10):
    """Quicklook of the content with the anomaly polygons outlined and the first ranks labelled."""
    values = quicklook(source)
    xmin, ymin, xmax, ymax = source.info.grid.extent
    figure, axes = page.new_figure(6.5, 6.5 * (ymax - ymin) / max(xmax - xmin, 1e-12) + 0.6)
    low, high = np.percentile(values.compressed(), (2, 98)) if values.count() else (None, None)
    image = axes.imshow(values, extent=(xmin, xmax, ymin, ymax), cmap='Spectral_r', vmin=low, vmax=high)
    figure.colorbar(image, ax=axes, shrink=0.8, label='content')
    # one collection for every outline: an axes.plot per polygon takes seconds for thousands
    outlines = [exterior_ring(anomaly.wkb) for anomaly in anomalies]
    axes.add_collection(LineCollection(outlines, colors='red', linewidths=0.8))
    for anomaly in anomalies[:labelled]:
        axes.annotate(anomaly.label, anomaly.centroid, color='white', fontsize=9, fontweight='bold',
                      ha='center', va='center')
    page.map_frame(axes, (xmin, xmax, ymin, ymax), source.info.grid.crs_wkt)
    return page.figure_html(figure, 'anomaly map')


def write_anomaly_report(path, source, statistics, method, threshold, anomalies, min_area,
                         ca_result=None, ca_note='', smoothing='', above=None):
    """HTML report: summary, statistics, histogram, C-A plot, map and the ranked table. `statistics`
    are those of the thresholded map: the content `source`, or its smoothed version described by
    `smoothing` (e.g. "content smoothed by a 5 × 5 pixel mean"); `above` is the number of areas
    above the threshold when only the highest-ranked `anomalies` were kept."""
    units = '(map units²)'
    thresholded = smoothing or 'content'
    summary = (f'Raster "{source.path}", band {source.band}; {statistics.count} valid pixels'
               f'{" outside the mask" if source.mask is not None else ""}'
               f'{" with a complete smoothing window" if smoothing else ""}. Method: {method}; '
               f'threshold {threshold:.6g}. {len(anomalies)} anomaly area(s)'
               f'{f" (the highest-ranked of {above})" if above and above > len(anomalies) else ""}'
               ' of at least '
               f'{min_area:g} {units}: 4-connected pixels with {thresholded} ≥ threshold, ranked I, II, ... '
               'by mean content × area (mean and max of the unsmoothed content).')
    rows = [('valid pixels', statistics.count), ('mean', statistics.mean), ('SD', statistics.sd),
            ('minimum', statistics.minimum), ('median', statistics.median()),
            ('MAD (x 1.4826)', statistics.mad()), ('maximum', statistics.maximum),
            ('histogram bin width', statistics.bin_width)]
    sections = [('Summary', page.paragraph(summary)),
                (f'Statistics ({thresholded})', page.table_html(['statistic', 'value'], rows)
                 + page.paragraph(
                    'Mean and SD are exact; median, MAD and percentiles come from a histogram of '
                    f'{len(statistics.counts)} bins and are exact to one bin width.', 'note')),
                ('Histogram', histogram_html(statistics, threshold, ''))]
    if ca_result is not None:
        breaks = ', '.join(f'{value:.6g}' for value in ca_result.breakpoints)
        slopes = ', '.join(f'{-segment.slope:.3g}' for segment in ca_result.segments)
        sections.append(('Concentration-area plot', ca_figure_html(ca_result, used_threshold=threshold)
                         + page.paragraph(f'Breakpoints: {breaks}; fractal exponents α (low to high '
                                          f'content): {slopes} (Cheng, Agterberg & Ballantyne 1994).',
                                          'note')))
    elif ca_note:
        sections.append(('Concentration-area plot', page.paragraph(ca_note, 'note')))
    sections.append(('Map', map_html(source, anomalies)))
    table = [(a.label, a.pixels, a.area, a.mean, a.maximum, a.score) for a in anomalies[:200]]
    more = f' (first 200 of {len(anomalies)})' if len(anomalies) > 200 else ''
    sections.append((f'Anomaly areas{more}', page.table_html(
        ['rank', 'pixels', f'area {units}', 'mean', 'max', 'mean x area'], table)))
    return page.write_report(path, 'High-anomaly areas', sections)
