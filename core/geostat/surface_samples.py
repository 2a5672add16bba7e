"""Surface-to-surface sample set (Cheng et al. 2023): at each geochemical sample, the kriged
content at its pixel and the image's band values (mean over a small window), optionally
densified with every pixel near a sample where the kriging variance is low.

Memory and time stay bounded: the image is cut to the samples' bounding box (plus the window
and densification margin), the other rasters are read at their offset on its lattice, and only the
row blocks (sized from the memory budget, with a halo of window//2 rows) that hold samples or
densified pixels are read, one at a time.
"""
import math
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal

from ..errors import InputError
from ..raster.blockio import DEFAULT_MEMORY_MB, RasterReader, block_windows, check_cancel, rows_per_block
from ..raster.lattice import LatticeReader, lattice_offset

WINDOW_SIZES = (1, 3, 5)
MAX_NAME_LENGTH = 60


@dataclass
class SampleSet:
    """Rows of the sample set: samples first (input order), then densified pixels (row order)."""
    x: np.ndarray          # map x in the image CRS: the sample's point, or the pixel centre
    y: np.ndarray
    source: np.ndarray     # index into the input samples; -1 for a densified pixel
    kriged: np.ndarray     # kriged value at the pixel (KRIGED band 1 units)
    variance: np.ndarray   # kriging variance at the pixel (units²); NaN without a VARIANCE raster
    bands: np.ndarray      # (rows, band count): window mean of each image band
    window_pixels: np.ndarray  # valid pixels averaged (fewest over the bands)
    descriptions: tuple = ()   # image band descriptions ('' where unset)
    skipped: dict = field(default_factory=dict)  # reason -> number of samples left out

    @property
    def densified(self):
        return self.source < 0

    def skipped_text(self):
        return ', '.join(f'{count} {reason}' for reason, count in self.skipped.items() if count)


def band_field_names(descriptions, reserved=()):
    """Field names from band descriptions: letters, digits and '_' only, starting with a letter,
    unique ignoring case (GeoPackage/SQLite columns are case-insensitive) and distinct from
    `reserved`; band_<n> (1-based) where a description is empty."""
    taken = {name.lower() for name in reserved}
    names = []
    for number, description in enumerate(descriptions, start=1):
        base = re.sub(r'[^0-9A-Za-z_]+', '_', description or '').strip('_')[:MAX_NAME_LENGTH]
        if not base:
            base = f'band_{number}'
        elif not base[0].isalpha():
            base = f'b_{base}'
        name, suffix = base, 2
        while name.lower() in taken:
            name, suffix = f'{base}_{suffix}', suffix + 1
        taken.add(name.lower())
        names.append(name)
    return names


def lattice_of_input(image, other, parameter):
    """Offset of raster `other` (RasterInfo) in INPUT's pixels: it must be on INPUT's pixel lattice
    (same CRS, pixel size and alignment), over any extent (e.g. kriged over the samples' extent)."""
    offset = lattice_offset(image.grid, other.grid)
    if offset is None:
        raise InputError(
            f'"{other.path}" ({other.grid.width}x{other.grid.height} px, geotransform '
            f'{other.grid.geotransform}) is not on the pixel lattice of INPUT ({image.grid.width}x'
            f'{image.grid.height} px, {image.grid.geotransform}: same CRS, pixel size and alignment) or has '
            'another CRS. Krige onto INPUT (rsgeochem:kriging with INPUT as reference raster) or align it '
            "with GDAL Warp (gdal:warpreproject) to INPUT's CRS, extent and pixel size.", parameter)
    return offset


class _Sources:
    """The open rasters: KRIGED, VARIANCE and MASK on INPUT's lattice, read in INPUT's pixels (masked
    where they have none)."""

    def __init__(self, image, kriged, variance, mask):
        self.image = RasterReader(image, 'INPUT')
        grid = self.image.info.grid
        if grid.geotransform[2] or grid.geotransform[4]:
            raise InputError('the image is rotated (geotransform with rotation terms); warp it to a '
                             'north-up grid first (gdal:warpreproject).', 'INPUT')
        self.others = {}
        for key, path in (('KRIGED', kriged), ('VARIANCE', variance), ('MASK', mask)):
            if path:
                reader = RasterReader(path, key)
                self.others[key] = LatticeReader(reader, lattice_of_input(self.image.info, reader.info, key))

    def kriged_holds(self, rows, cols):
        """Which pixels (rows, cols) of INPUT lie inside KRIGED and VARIANCE (when given)."""
        return np.logical_and.reduce([self.others[key].holds(rows, cols)
                                      for key in ('KRIGED', 'VARIANCE') if key in self.others])

    def read(self, window):
        """(bands masked array, kriged, variance or None, keep-mask): rows of `window` with halo."""
        bands = self.image.read(window)
        width = self.image.info.grid.width
        extra = {key: reader.read(window, width) for key, reader in self.others.items()}
        keep = np.ones(bands.shape[1:], dtype=bool)
        if 'MASK' in extra:  # MASK: 0 (or nodata, or outside it) excludes a pixel, any other value keeps it
            keep = ~np.ma.getmaskarray(extra['MASK']) & (extra['MASK'].filled(0) != 0)
        return bands, extra['KRIGED'], extra.get('VARIANCE'), keep


def _window_means(bands, keep, block, rows, cols, half):
    """Mean of each band over the (2·half+1)² window around pixels (rows, cols), skipping nodata
    and MASKed pixels and the parts outside the raster. Returns (means (n, B), valid count (n,))."""
    count = bands.shape[0]
    valid = ~np.ma.getmaskarray(bands) & keep
    pad = ((0, 0), (half - block.top, half - block.bottom), (half, half))
    data = np.pad(bands.filled(0.0), pad)
    valid = np.pad(valid, pad)
    offsets = np.arange(-half, half + 1)
    r = (rows - block.row + half)[:, None, None] + offsets[None, :, None]
    c = (cols + half)[:, None, None] + offsets[None, None, :]
    values = data[:, r, c].reshape(count, len(rows), -1)
    weights = valid[:, r, c].reshape(count, len(rows), -1)
    totals = weights.sum(axis=2)
    with np.errstate(invalid='ignore', divide='ignore'):
        means = (values * weights).sum(axis=2) / totals
    return means.T, totals.min(axis=0)


def _disc_pixels(radius, grid, fcol, frow, first_row, last_row):
    """Linear indices of pixels in rows first_row..last_row whose centres lie within `radius`
    (map units) of the point at fractional pixel position (fcol, frow)."""
    reach_rows = math.ceil(radius / grid.pixel_height) + 1
    reach_cols = math.ceil(radius / grid.pixel_width) + 1
    row0, col0 = int(math.floor(frow)), int(math.floor(fcol))
    rows = np.arange(max(first_row, row0 - reach_rows), min(last_row, row0 + reach_rows + 1))
    cols = np.arange(max(0, col0 - reach_cols), min(grid.width, col0 + reach_cols + 1))
    dy = (rows[:, None] + 0.5 - frow) * grid.pixel_height
    dx = (cols[None, :] + 0.5 - fcol) * grid.pixel_width
    inside = dx ** 2 + dy ** 2 <= radius ** 2
    return (rows[:, None] * grid.width + cols[None, :])[inside]


class _Collector:
    """Accumulates rows of the sample set block by block."""

    def __init__(self):
        self.parts = []

    def add(self, x, y, source, kriged, variance, bands, pixels):
        self.parts.append((x, y, source, kriged, variance, bands, pixels))

    def result(self, descriptions, skipped):
        if not self.parts:
            empty = np.empty(0)
            return SampleSet(empty, empty, np.empty(0, np.int64), empty, empty,
                             np.empty((0, len(descriptions))), np.empty(0, np.int64), descriptions,
                             skipped)
        columns = [np.concatenate(parts) for parts in zip(*self.parts)]
        # samples in input order, then densified pixels in block (row) order
        order = np.lexsort((np.arange(len(columns[2])), columns[2], columns[2] < 0))
        columns = [column[order] for column in columns]
        return SampleSet(*columns, descriptions=descriptions, skipped=skipped)


def surface_samples(image, kriged, x, y, variance=None, mask=None, window=1, radius=0.0,
                    max_variance=None, memory_mb=DEFAULT_MEMORY_MB, progress=None, cancel=None):
    """Build the sample set from raster paths and sample coordinates (image CRS).

    KRIGED, VARIANCE and MASK are on the image's pixel lattice, over the image or any window of it
    (e.g. kriged over the samples' extent); MASK counts as 0 where it has no pixel. A sample is left
    out (and counted) when it falls outside the image or outside KRIGED or VARIANCE, on a MASKed
    pixel or on nodata in any image band, KRIGED or VARIANCE. With radius > 0 (map units), every other pixel
    whose centre lies within `radius` of a sample, is valid, and has variance < max_variance is
    added once as a densified row (needs VARIANCE and max_variance > 0).
    """
    if window not in WINDOW_SIZES:
        raise InputError(f'window must be one of {WINDOW_SIZES} pixels, not {window}.', 'WINDOW')
    if radius > 0 and not variance:
        raise InputError('densification keeps pixels by kriging variance; give the VARIANCE raster '
                         'written by rsgeochem:kriging, or set RADIUS to 0.', 'VARIANCE')
    if radius > 0 and not (max_variance and max_variance > 0):
        raise InputError('give the largest kriging variance (units² of the kriged value) a densified '
                         'pixel may have, greater than 0.', 'MAX_VARIANCE')
    grid = _Sources(image, kriged, variance, mask).image.info.grid  # checks the grids
    fcol, frow = (np.asarray(v, dtype=np.float64) for v in grid.to_pixel(x, y))
    cols, rows = np.floor(fcol).astype(np.int64), np.floor(frow).astype(np.int64)
    inside = np.flatnonzero((cols >= 0) & (cols < grid.width) & (rows >= 0) & (rows < grid.height))
    if inside.size == 0:
        raise InputError(f'none of the {len(cols)} samples lies inside INPUT (extent {grid.extent}); '
                         'check that samples and image cover the same area.', 'SAMPLES')
    reach = math.ceil(radius / min(grid.pixel_width, grid.pixel_height)) + 1 if radius > 0 else 0
    margin = window // 2 + reach
    with _cropped(image, grid, cols[inside], rows[inside], margin) as cropped_image:
        return _surface_samples(cropped_image, kriged, variance, mask, x, y, len(cols) - inside.size, window,
                                radius, max_variance, memory_mb, progress, cancel)


@contextmanager
def _cropped(image, grid, cols, rows, margin):
    """The image cut (as a virtual raster in memory) to the pixels within `margin` of the samples'
    bounding box, so that only the part around the samples is ever read, whatever the raster size
    (the other rasters are read at their offset on the image's lattice: only that part too)."""
    col0, row0 = max(int(cols.min()) - margin, 0), max(int(rows.min()) - margin, 0)
    col1, row1 = min(int(cols.max()) + margin + 1, grid.width), min(int(rows.max()) + margin + 1, grid.height)
    if (col1 - col0) * (row1 - row0) > 0.5 * grid.width * grid.height:
        yield image
        return
    path = f'/vsimem/rsgeochem-surfacesamples-{uuid.uuid4().hex}.vrt'
    try:
        gdal.Translate(path, image, format='VRT', srcWin=[col0, row0, col1 - col0, row1 - row0])
        yield path
    finally:
        gdal.Unlink(path)


def _surface_samples(image, kriged, variance, mask, x, y, outside, window, radius, max_variance, memory_mb,
                     progress, cancel):
    sources = _Sources(image, kriged, variance, mask)
    grid, band_count = sources.image.info.grid, sources.image.info.band_count
    fcol, frow = (np.asarray(v, dtype=np.float64) for v in grid.to_pixel(x, y))
    cols, rows = np.floor(fcol).astype(np.int64), np.floor(frow).astype(np.int64)
    inside = np.flatnonzero((cols >= 0) & (cols < grid.width) & (rows >= 0) & (rows < grid.height))
    in_kriged = sources.kriged_holds(rows[inside], cols[inside])
    skipped = {'outside INPUT': outside, 'outside KRIGED or VARIANCE': int((~in_kriged).sum()),
               'on a pixel masked by MASK': 0, 'on nodata in INPUT': 0, 'on nodata in KRIGED or VARIANCE': 0}
    inside = inside[in_kriged]
    sample_pixels = np.unique(rows[inside] * grid.width + cols[inside])
    half = window // 2
    # per pixel: bands read and their padded copy (float64 + mask each), kriged, variance, mask, keep
    bytes_per_pixel = (2 * band_count + 4) * 9
    windows = block_windows(grid.height, rows_per_block(grid.width, bytes_per_pixel, memory_mb, half), half)
    reach = math.ceil(radius / grid.pixel_height) + 1 if radius > 0 else -1
    collector = _Collector()
    for number, block in enumerate(windows):
        check_cancel(cancel)
        end = block.row + block.rows
        here = inside[(rows[inside] >= block.row) & (rows[inside] < end)]
        near = inside[(rows[inside] >= block.row - reach) & (rows[inside] < end + reach)]
        dense = np.empty(0, np.int64)
        if near.size and radius > 0:
            dense = np.unique(np.concatenate([_disc_pixels(radius, grid, fcol[i], frow[i], block.row, end)
                                              for i in near]))
            dense = dense[~np.isin(dense, sample_pixels)]
        if here.size or dense.size:
            _collect_block(collector, sources, block, grid, half, here, rows, cols, x, y, dense,
                           max_variance, skipped)
        if progress is not None:
            progress((number + 1) / len(windows))
    result = collector.result(sources.image.info.descriptions, skipped)
    if not (result.source >= 0).any():
        raise InputError(f'no usable sample: {result.skipped_text()}. Check MASK and the nodata of '
                         'INPUT and KRIGED around the samples.', 'SAMPLES')
    return result


def _collect_block(collector, sources, block, grid, half, here, rows, cols, x, y, dense,
                   max_variance, skipped):
    bands, kriged, variance, keep = sources.read(block)
    core = slice(block.top, block.top + block.rows)
    centre_image = ~np.ma.getmaskarray(bands).any(axis=0)[core]
    centre_kriged = ~np.ma.getmaskarray(kriged)[core]
    if variance is not None:
        centre_kriged &= ~np.ma.getmaskarray(variance)[core]
    centre_keep = keep[core]

    r, c = rows[here] - block.row, cols[here]
    masked, nodata_image = ~centre_keep[r, c], ~centre_image[r, c]
    nodata_kriged = ~centre_kriged[r, c]
    skipped['on a pixel masked by MASK'] += int(masked.sum())
    skipped['on nodata in INPUT'] += int((~masked & nodata_image).sum())
    skipped['on nodata in KRIGED or VARIANCE'] += int((~masked & ~nodata_image & nodata_kriged).sum())
    usable = here[~(masked | nodata_image | nodata_kriged)]

    d_rows, d_cols = dense // grid.width, dense % grid.width
    ok = centre_keep & centre_image & centre_kriged
    if dense.size:
        low = variance.filled(np.inf)[core][d_rows - block.row, d_cols] < max_variance
        chosen = ok[d_rows - block.row, d_cols] & low
        d_rows, d_cols = d_rows[chosen], d_cols[chosen]
    all_rows = np.concatenate([rows[usable], d_rows])
    all_cols = np.concatenate([cols[usable], d_cols])
    if all_rows.size == 0:
        return
    means, pixels = _window_means(bands, keep, block, all_rows, all_cols, half)
    centre_x, centre_y = grid.pixel_centres(block.row, block.rows)
    at = (all_rows - block.row + block.top, all_cols)
    collector.add(np.concatenate([np.asarray(x, np.float64)[usable], centre_x[d_cols]]),
                  np.concatenate([np.asarray(y, np.float64)[usable], centre_y[d_rows - block.row]]),
                  np.concatenate([usable, np.full(d_rows.size, -1, np.int64)]),
                  kriged.data[at],
                  variance.data[at] if variance is not None else np.full(all_rows.size, np.nan),
                  means, pixels)
