"""High-anomaly areas of a content raster: block-wise statistics, thresholds, ranked polygons.

Statistics come from two block-wise passes: exact count, mean, SD, min and max (Chan et al. 1979
pairwise update of mean and sum of squares), then histograms over [min, max] (linear, for median,
MAD and percentiles) and over log10 of the positive values (for the concentration-area curve).
Histogram quantiles are exact to one bin width = (max - min) / bins.

Areas: the 4-connected pixels at or above the threshold, labelled block by block with
scipy.ndimage.label and joined across block edges (connected_areas), so memory stays that of a
block. Only the areas that can rank among the `most` highest get a second pass over the blocks
holding them: their pixel count, mean, max and centroid, and a raster of their ids that
gdal.Polygonize turns into polygons (holes kept), so a map with thousands of areas above the
threshold costs little more than one with ten.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array, ogr, osr
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

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
        self.mask, self.reader = None, None
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
            yield window, self.masked(window, block[0])

    def read(self, window):
        """Masked values of one window, as blocks() gives them."""
        if self.reader is None:
            self.reader = RasterReader(self.path, self.input_key)
        return self.masked(window, self.reader.read(window, [self.band])[0])

    def release(self):
        """Close the reader read() opened: a smoothed map is a scratch file, removed once its areas
        are found (an open file cannot be removed on Windows)."""
        self.reader = None

    def masked(self, window, values):
        if self.mask is None:
            return values
        keep = self.mask.read(window, [1])[0]
        excluded = np.ma.getmaskarray(keep) | (keep.filled(0) == 0)
        return np.ma.MaskedArray(np.ma.getdata(values), np.ma.getmaskarray(values) | excluded)


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


def labels_above(source, threshold, content, window, values):
    """4-connected labels (scipy.ndimage.label) and their count of a block's pixels whose `source`
    value is >= threshold; `values` are those of `content` in the block."""
    level = values if source is content else source.read(window)
    return ndimage.label(level.filled(-np.inf) >= threshold)


@dataclass
class Areas:
    """Connected areas found by `connected_areas`. Labels are numbered through the blocks (0-based):
    block b's label l is number first_label[b] + l - 1; each belongs to one area."""
    windows: list               # the row blocks
    first_label: np.ndarray     # per block
    area_of_label: np.ndarray   # area index of each label
    pixels: np.ndarray          # per area
    sums: np.ndarray            # content sums, added in another order than polygon_statistics does
    absolute_sums: np.ndarray   # sums of |content|: bound their rounding

    def blocks_of(self, chosen):
        """Block numbers holding a pixel of the areas `chosen`."""
        labels = np.flatnonzero(np.isin(self.area_of_label, chosen))
        return set(np.searchsorted(self.first_label, labels, side='right') - 1)


def connected_areas(source, threshold, content, progress=None, cancel=None):
    """Areas of 4-connected pixels with `source` value >= threshold over the whole raster: each
    block is labelled in memory and labels touching across block edges are joined as the connected
    components of a graph (scipy.sparse.csgraph), so memory stays that of a block (scipy.ndimage.label
    would need the whole raster); then pixels and content sums per area."""
    windows, first_label, pixels, sums, absolute, edges = [], [], [], [], [], []
    offset, previous_row = 0, None
    # the blocks of every later pass over the areas: their sums add up in the same order. Per pixel
    # beside the read block: two filled float64 copies, the comparison and `inside` masks, int32
    # labels, and at most 3 x 8 bytes for the labels, values and |values| of pixels inside (52 bytes)
    for window, values in content.blocks(progress, cancel, extra_bytes_per_pixel=52):
        labels, count = labels_above(source, threshold, content, window, values)
        windows.append(window)
        first_label.append(offset)
        inside = labels > 0
        local = labels[inside] - 1
        data = values.filled(0.0)[inside]
        pixels.append(np.bincount(local, minlength=count))
        sums.append(np.bincount(local, data, minlength=count))
        absolute.append(np.bincount(local, np.abs(data), minlength=count))
        if previous_row is not None:   # labels in the same column of adjacent rows are one area
            touching = (previous_row >= 0) & (labels[0] > 0)
            edges.append(np.stack([previous_row[touching], labels[0][touching] - 1 + offset]))
        previous_row = np.where(labels[-1] > 0, labels[-1] - 1 + offset, -1)
        offset += count
    pairs = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), dtype=np.int64)
    graph = csr_matrix((np.ones(pairs.shape[1], dtype=np.int8), (pairs[0], pairs[1])), shape=(offset, offset))
    count, area_of_label = connected_components(graph, directed=False)

    def per_area(parts):
        return np.bincount(area_of_label, np.concatenate(parts), minlength=count)
    return Areas(windows, np.array(first_label), area_of_label, per_area(pixels).astype(np.int64),
                 per_area(sums), per_area(absolute))


def candidates(areas, pixel_area, min_area, most):
    """Indices of the areas of at least `min_area` that can rank among the `most` highest by mean x
    area (all with `most` 0), and the number of areas of at least `min_area`. connected_areas adds
    their content up in another order than polygon_statistics, so each score may differ from the
    exact one by up to about n ε sum|x| (recursive summation of n values, Higham 2002, ch. 4): every
    area whose score could still reach the `most`-th highest is kept for the exact statistics."""
    area = areas.pixels * pixel_area
    large = np.flatnonzero(area >= min_area)
    if not most or len(large) <= most:
        return large, len(large)
    pixels = areas.pixels[large]
    scores = areas.sums[large] / pixels * area[large]
    error = 4 * (pixels + 2) * np.finfo(float).eps * areas.absolute_sums[large] * pixel_area
    top = np.argpartition(-scores, most - 1)[:most]
    lowest = np.min(scores[top] - error[top])
    return large[scores + error >= lowest], len(large)


def class_type(count):
    """GDAL type of the class raster of `count` pids: the smallest unsigned integer type holding them
    (Byte for the default 10 areas). gdal.Polygonize's memory grows with the raster's pixel size,
    whatever GDAL's cache: on 20000 x 4096 pixels, +410 MB for UInt32, +206 for UInt16, +113 for Byte
    (GDAL 3.6)."""
    return gdal_array.NumericTypeCodeToGDALTypeCode(np.min_scalar_type(count))


def polygon_statistics(areas, chosen, source, threshold, content, classes, progress=None, cancel=None):
    """pid -> [pixels, sum, max, sum x, sum y] of the areas `chosen` (pid 1, 2, ... in that order),
    accumulated block by block; their pids go to the RasterWriter `classes` (of class_type, 0
    elsewhere) for gdal.Polygonize. Blocks without a chosen area are not read."""
    pid_of_area = np.zeros(len(areas.pixels), dtype=np.uint32)
    pid_of_area[chosen] = np.arange(1, len(chosen) + 1)
    pid_of_label = pid_of_area[areas.area_of_label]
    needed = areas.blocks_of(chosen)
    grid = content.info.grid
    table = {}
    for block, window in enumerate(areas.windows):
        check_cancel(cancel)
        if block not in needed:
            classes.write(window.row, np.zeros((window.rows, grid.width), dtype=classes.numpy_type))
            continue
        values = content.read(window)
        labels, count = labels_above(source, threshold, content, window, values)
        first = areas.first_label[block]
        ids = np.concatenate([[0], pid_of_label[first:first + count]]).astype(classes.numpy_type)[labels]
        classes.write(window.row, ids)
        accumulate(table, ids, values, grid, window)
        if progress is not None:
            progress((block + 1) / len(areas.windows))
    return table


def accumulate(table, ids, values, grid, window):
    """Add a block's pixels of the areas `ids` (pid per pixel, 0 outside) to the table."""
    inside = ids > 0
    if not inside.any():
        return
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


def polygonize(class_path, gpkg_path, crs_wkt):
    """gdal.Polygonize of the pixels of each pid (4-connected) into a GeoPackage layer whose field
    'class' holds the pid; returns the layer name."""
    classes = gdal.Open(str(class_path))
    band = classes.GetRasterBand(1)
    dataset = ogr.GetDriverByName('GPKG').CreateDataSource(str(gpkg_path))
    srs = osr.SpatialReference(wkt=crs_wkt) if crs_wkt else None
    layer = dataset.CreateLayer('anomalies', srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn('class', ogr.OFTInteger))

    def release_read_tiles(*_):
        """Polygonize's progress report (every 1 % of its two passes): GDAL's cache would otherwise
        keep every tile of the class raster Polygonize read (the whole raster: 400 MB at 20000² for
        one byte per pixel)."""
        classes.FlushCache()
        return 1
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0, callback=release_read_tiles)
    dataset = None  # noqa: F841 - flushes and closes the GeoPackage
    return 'anomalies'


def ranked_areas(source, threshold, min_area=0.0, most=0, progress=None, cancel=None, content=None):
    """Connected areas (4-connected pixels) with value >= threshold, at least `min_area` map
    units^2, ranked I, II, ... by mean content x area (largest first; equal scores in the order
    gdal.Polygonize gives the polygons), the `most` highest (0: all), and how many areas of at
    least `min_area` there are.
    Pixel count, mean and max are those of `content` (a ValueSource on the same grid, e.g. the map
    before smoothing; default `source` itself).

    Only the areas that can rank among the `most` highest get exact statistics and polygons: a
    first pass labels the areas block by block (connected_areas), a second accumulates their
    statistics and writes their pids to a class raster that gdal.Polygonize turns into polygons
    (holes kept), the geometries GDAL gives for the same pixels on the same grid."""
    content = content or source
    try:
        return _ranked_areas(source, threshold, min_area, most, progress, cancel, content)
    finally:
        source.release()
        content.release()


def _ranked_areas(source, threshold, min_area, most, progress, cancel, content):
    areas = connected_areas(source, threshold, content, stage(progress, 0, 0.4), cancel)
    chosen, above = candidates(areas, source.pixel_area, min_area, most)
    if not len(chosen):
        return [], above
    with scratch_folder('rsgeochem-anomalies') as work:
        work = Path(work)
        with RasterWriter(work / 'classes.tif', source.info.grid, 1, nodata=0,
                          data_type=class_type(len(chosen))) as classes:
            table = polygon_statistics(areas, chosen, source, threshold, content, classes,
                                       stage(progress, 0.4, 0.8), cancel)
        check_cancel(cancel)
        layer_name = polygonize(work / 'classes.tif', work / 'polygons.gpkg', source.info.grid.crs_wkt)
        if progress is not None:
            progress(0.9)
        dataset = ogr.Open(str(work / 'polygons.gpkg'))
        layer = dataset.GetLayerByName(layer_name)
        features = {feature.GetField('class'): feature for feature in layer}
        kept = []
        for pid, (pixels, total, peak, sx, sy) in table.items():
            area = pixels * source.pixel_area
            mean = total / pixels
            fid = features[pid].GetFID()
            kept.append((mean * area, fid, pid, pixels, area, mean, peak, (sx / pixels, sy / pixels)))
        kept.sort(key=lambda item: (-item[0], item[1]))
        anomalies = []
        for rank, (score, _, pid, pixels, area, mean, peak, centroid) in enumerate(kept[:most or None], 1):
            wkb = bytes(features[pid].GetGeometryRef().ExportToWkb())
            anomalies.append(Anomaly(rank, roman(rank), pixels, area, mean, peak, score, centroid, wkb))
        features = layer = dataset = None  # closes the GeoPackage before the folder is removed
    return anomalies, above


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
    from matplotlib.collections import LineCollection  # imported when drawn, as in report.page
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
