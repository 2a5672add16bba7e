"""Laplacian-pyramid regression fusion of a coarse geochemical grid with a fine image
(Remote Sens. 2023, 15, 1993), tile by tile.

Geo = coarse grid on the image grid by cubic convolution; for Geo and each image band MS the
pyramid gives low = lowpass(x) and high = x − low (core.fusion.pyramid). A regression Geo_L ~ MS_L
(global, or per K-means cluster of the image) gives intercept a0 and slopes a, then

* paper mode (the article's formula): Geo_Lre = a0 + a·MS_L, Geo_Hre = Geo_H + a·MS_H,
  fused = Geo_Lre + Geo_Hre. The article's Eq. 2 writes Geo_Hre with the regression's constant a0
  as well; summed with Geo_Lre (its Eq. 3) a0 would count twice and shift the map by a0, so it is
  left out of Geo_Hre here: fused = a0 + a·MS + Geo_H;
* coherent mode (ours, the default): fused = Geo + a·MS_H — the measured low frequency is kept
  and only regression-scaled image detail is injected, so averaging the fused map back to the
  coarse cells nearly reproduces the input grid (the coherence property of ATPRK, Wang et al.
  2015, IEEE TGRS 53(9)).

The slopes a come from least squares (the paper) or from a ridge regression whose penalty is the
image noise (core.fusion.model), which keeps collinear bands from amplifying noise. The default
'nonlinear' regression (core.fusion.model) predicts each pixel's content F(MS) from nonlinear band
features fitted on cell averages (or the pyramid's low frequency); coherent mode then writes F and
the residual passes (at least one) put the grid back: fused = F + cubic(coarse − cell means of F),
the detail being F less what the grid can hold, measured the way the grid was made (cell means
resampled by cubic convolution), which beat the pyramid's low frequency on the Wald benchmarks.
Paper mode with it: fused = F + Geo_H. In coherent mode F is by default the average of that
regression and a local (geographically weighted) one fitted on the cell means of the bands and
their level-1 low frequency over the whole grid (collect_cell_grid, core.fusion.model.LocalModel).

Optional residual correction (in the spirit of pyDMS, Gao et al. 2012, Remote Sens. 4(11)):
the fused map is averaged onto the coarse grid, the residual coarse − average is resampled by
cubic convolution and added back; each iteration is one more pass. It removes the part of the
injected detail that the coarse grid already holds (on the Wald test: RMSE 79 → 61 DN). When the
coarse cells are whole blocks of image pixels (core.fusion.grid.cell_factors) the averages are
accumulated while the fused map is written (CellMeans) instead of re-read by a GDAL warp.

Pass 1 reads evenly spaced row strips for the regression sample, pass 2 applies the model tile by
tile (two worker threads), each tile read once with a halo = pyramid support (none where the
pyramid is not needed), so the result does not depend on the tiling, and memory and speed depend
on neither the image width nor the block budget (beyond a floor of 512-column tiles).

On a Dask cluster (core.distributed.fusion) the driver fits as here (fit, on the same sample) and
broadcasts the model; each task fuses a full-width strip of whole rows of tiles (_fuse_window around
the pure fuse_tile) and returns grid.cell_sums of each of its TILE_ROWS blocks, which the driver adds
up in this pipeline's order; the one residual pass (coarse_residual, then fused + cubic residual per
pixel) runs tile by tile too: the output is this pipeline's, bit for bit.
"""
import math
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..dependencies import require
from ..errors import InputError
from ..metrics import PairStats
from ..raster.blockio import (
    DEFAULT_MEMORY_MB,
    RasterReader,
    RasterWriter,
    Window,
    block_windows,
    check_cancel,
    raster_info,
    rows_per_block,
)
from ..raster.memory import release_freed_memory
from ..raster.scratch import scratch_folder
from . import pyramid
from .grid import (
    TEMPORARY_GTIFF,
    CellMeans,
    cell_factors,
    covered_rows_and_columns,
    overlaps,
    prepare_grids,
    single_band_vrt,
    warp_to_grid,
)
from .model import (
    ESTIMATORS,
    MIN_CELLS_PER_FEATURE,
    Basis,
    basis_size,
    fit_local,
    fit_model,
    local_fit_bytes,
)

MODES = ('paper', 'coherent')
WORKERS = 2
PREVIEW_SIZE = 400
CELL_SAMPLE = 50_000   # coarse cells the nonlinear regression learns from at most (20 per feature: 2500)
# bytes per pixel and band of a tile read with its halo (or a block of collect_cell_grid): float32
# read + mask, padded copy, cascade temporaries, low
BYTES_PER_BAND_PIXEL = 40
# Pass 2 works on tiles of TILE_ROWS rows (the height of our GeoTIFF tiles, so each row of output
# tiles is written once) and a multiple of TILE_COLUMN_STEP columns (GDAL's warped-VRT blocks are
# 512 wide: tiles on their edges warp each block once), in a strip of tiles across the raster.
TILE_ROWS = 256
TILE_COLUMN_STEP = 512
TILE_COLUMN_RANGE = (512, 2048)

KEYS = dict(geo='INPUT_GEOCHEM', image='INPUT_IMAGE', bands='BANDS', mask='MASK',
            clusters='CLUSTERS', reference='REFERENCE')


@dataclass(frozen=True)
class FusionSettings:
    mode: str = 'coherent'
    clusters: int = 1             # 1: global regression; >= 2: K-means clusters (local mode)
    estimator: str = 'nonlinear'  # core.fusion.model.ESTIMATORS: 'ols' (paper), 'noise', 'nonlinear'
    levels: int = 0               # pyramid levels, 0: from the resolution ratio
    residual_iterations: int = 0
    sample_size: int = 200_000
    min_cluster_pixels: int = 100
    seed: int = 1
    memory_mb: int = DEFAULT_MEMORY_MB
    cluster_bands: tuple = ()     # 1-based image bands the K-means clusters use; () = the regression's
    local: bool = True            # blend in a local regression (nonlinear estimator, coherent mode)


@dataclass
class FusionResult:
    grids: object
    levels: int
    model: object
    coherence: dict               # fused averaged onto the coarse cells vs the coarse grid
    cubic_coherence: dict         # same for the cubic-resampled grid
    reference: dict = None        # {'fused': stats, 'cubic': stats} against the reference layer
    preview: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


class _Blocks:
    """Reads image bands, the cubic-resampled grid and the mask for a window, one set of GDAL
    handles per thread (GDAL datasets are not thread-safe)."""

    def __init__(self, image_path, bands, cubic_path, mask_path, cluster_bands=()):
        self.paths = (image_path, bands, cubic_path, mask_path)
        self.cluster_bands = list(cluster_bands)
        self.local = threading.local()

    def cluster_values(self, window, bands_values=None):
        """The values K-means clusters pixels by at the window's own rows: `bands_values` (the
        regression bands of those rows, or None: fuse_tile's and sample_window's default) unless
        other cluster bands were chosen, then those."""
        if not self.cluster_bands:
            return bands_values
        own = replace(window, top=0, bottom=0, left=0, right=0)
        return self._readers()[0].read(own, self.cluster_bands, np.float32).data

    def _readers(self):
        if not hasattr(self.local, 'readers'):
            image_path, _, cubic_path, mask_path = self.paths
            self.local.readers = (RasterReader(image_path, KEYS['image']),
                                  RasterReader(cubic_path, KEYS['geo']),  # a VRT of the coarse grid
                                  RasterReader(mask_path, KEYS['mask']) if mask_path else None)
        return self.local.readers

    def read(self, window):
        """(stack (bands + 1, read rows, cols) float32 with the grid last, valid (read rows, cols))."""
        image, cubic, mask = self._readers()
        bands = self.paths[1]
        ms = image.read(window, bands, np.float32)
        geo = cubic.read(window, [1], np.float32)
        valid = ~(ms.mask.any(axis=0) | geo.mask[0])
        if mask is not None:
            keep = mask.read(window, [1], np.float32)
            valid &= ~keep.mask[0] & (keep.data[0] != 0)
        stack = np.concatenate([ms.data, geo.data])
        return stack, valid


def split(stack, read_valid, window, levels):
    """Own-pixel values, low frequencies and validity of a window read with its halo: `stack`
    (bands + 1, read rows, read cols) with the grid last, `read_valid` (read rows, read cols)."""
    low, _ = pyramid.lowpass(stack, read_valid, levels, window.top, window.bottom, window.left,
                             window.right)
    return window.core(stack), low, window.core(read_valid) & np.isfinite(low[-1])


def sample_window(stack, read_valid, window, levels, cluster_values=None):
    """Pass 1's part of one sample strip (sample_strips), read with its halo as for fuse_tile: the
    valid pixels' values (n, bands), low frequencies (n, bands), the grid's low frequency (n,), the
    bands' finest detail x − lowpass₁(x) (n, bands, for the noise estimate) and the K-means band
    values (n, cluster bands; None: the image bands). Pure; merge_samples joins the parts."""
    values, low, valid = split(stack, read_valid, window, levels)
    detail = values[:-1] - _context(stack, read_valid, window)
    clustered = values[:-1] if cluster_values is None else cluster_values
    return (values[:-1, valid].T, low[:-1, valid].T, low[-1, valid], detail[:, valid].T,
            clustered[:, valid].T)


def merge_samples(parts, sample_size, seed):
    """The fit sample from sample_window's parts in strip order, randomly thinned to `sample_size`
    pixels (float64 columns 'pixels', 'low', 'target_low', 'fine_detail', 'cluster_pixels')."""
    columns = [np.concatenate(column) for column in zip(*parts)]
    count = len(columns[2])
    if count > sample_size:
        keep = np.random.default_rng(seed).choice(count, sample_size, replace=False)
        columns = [column[keep] for column in columns]
    names = ('pixels', 'low', 'target_low', 'fine_detail', 'cluster_pixels')
    return {name: column.astype(np.float64) for name, column in zip(names, columns)}


def _context(stack, read_valid, window):
    """Level-1 low frequency of the image bands of `stack` (the grid last) at the window's own pixels:
    the finest detail's complement, and the local regression's spatial context (core.fusion.model)."""
    size = pyramid.halo(1)
    top, bottom, left, right = (min(halo, size) for halo in
                                (window.top, window.bottom, window.left, window.right))
    rows = slice(window.top - top, window.top + window.rows + bottom)
    columns = slice(window.left - left, stack.shape[-1] - window.right + right)
    return pyramid.lowpass(stack[:-1, rows, columns], read_valid[rows, columns], 1, top, bottom, left,
                           right)[0]


def _strip_windows(height, strip_rows, strips, halo):
    if strips * strip_rows >= height:
        starts = range(0, height, strip_rows)
    else:
        starts = np.unique(np.linspace(0, height - strip_rows, strips).round().astype(int))
    windows = []
    for start in map(int, starts):
        rows = min(strip_rows, height - start)
        windows.append(Window(start, rows, min(halo, start), min(halo, height - start - rows)))
    return windows


def collect_sample(blocks, grid, levels, settings, cancel=None, progress=None):
    """Pass 1: pixel values, their low frequencies and finest detail, and the grid's low frequency,
    on evenly spaced row strips (as many halo rows as own rows at most, whatever the block budget,
    so that the sample does not depend on it), randomly thinned to `settings.sample_size` pixels."""
    windows = sample_strips(grid, levels, settings)

    def strip_sample(window):
        stack, read_valid = blocks.read(window)
        return sample_window(stack, read_valid, window, levels, blocks.cluster_values(window))
    parts = []
    with ThreadPoolExecutor(WORKERS) as executor:
        for part in _ordered(executor, strip_sample, windows, cancel):
            parts.append(part)
            if progress:
                progress(len(parts) / len(windows))
    return merge_samples(parts, settings.sample_size, settings.seed)


def sample_strips(grid, levels, settings):
    """The evenly spaced row strips (with their halo) the fit samples are read from."""
    halo = pyramid.halo(levels)
    strip_rows = max(8, halo)
    strips = math.ceil(math.ceil(settings.sample_size / grid.width) / strip_rows)
    return _strip_windows(grid.height, strip_rows, strips, halo)


def _smooth(values, valid, levels, window):
    """Low frequency of one band (rows with the window's halo) at the window's own rows."""
    return pyramid.lowpass(values[None], valid, levels, window.top, window.bottom)[0][0]


def collect_basis_sample(blocks, grid, levels, settings, basis, cancel=None):
    """Pass 1b of the 'nonlinear' estimator (core.fusion.model) when the grids are not aligned: on
    the strips of collect_sample, each basis feature smoothed by the pyramid (one at a time, so a
    strip holds one feature), with the grid's low frequency and the cluster-band values, at every
    step-th valid pixel: about CELL_SAMPLE pixels."""
    windows = sample_strips(grid, levels, settings)
    step = max(1, math.ceil(sum(window.rows for window in windows) * grid.width / CELL_SAMPLE))
    parts = []
    for window in windows:
        check_cancel(cancel)
        stack, read_valid = blocks.read(window)
        geo_low = _smooth(stack[-1], read_valid, levels, window)
        picked = np.flatnonzero((window.core(read_valid) & np.isfinite(geo_low)).ravel())[::step]
        features = np.stack([_smooth(feature, read_valid, levels, window).ravel()[picked]
                             for feature in basis.features(stack[:-1])], axis=1)
        clustered = blocks.cluster_values(window, window.core(stack)[:-1])
        clustered = clustered.reshape(len(clustered), -1)[:, picked].T
        parts.append((clustered, features, geo_low.ravel()[picked]))
    names = ('basis_pixels', 'basis_low', 'basis_target_low')
    return {'basis': basis, **{name: np.concatenate(column).astype(np.float64)
                               for name, column in zip(names, zip(*parts))}}


def collect_cell_sample(blocks, grids, settings, basis, cancel=None):
    """Pass 1b of the 'nonlinear' estimator when every coarse cell is a whole block of image pixels
    (grid.cell_factors): the basis features averaged over each cell, paired with the cell's value,
    the aggregation a coarse grid of cell means stands for (exact in the Wald protocol). Evenly
    spaced rows of cells up to about CELL_SAMPLE cells; None when the grids are not
    aligned (collect_basis_sample then smooths with the pyramid instead)."""
    factors = cell_factors(grids.coarse, grids.image)
    if factors is None:
        return None
    rows, columns, row_offset, column_offset = factors
    coarse = RasterReader(grids.coarse_path, KEYS['geo'])
    width = grids.coarse.width
    first, last = -column_offset, -column_offset + width * columns     # fine columns of the cells
    wanted = min(grids.coarse.height, math.ceil(min(settings.sample_size, CELL_SAMPLE) / width))
    cell_rows = [int(row) for row in np.unique(np.linspace(0, grids.coarse.height - 1, wanted).round())]

    def row_means(cell_row):
        """(means of the features then the cluster values, cells wholly valid, cluster values count)."""
        window = Window(cell_row * rows - row_offset, rows)
        stack, valid = blocks.read(window)
        clustered = blocks.cluster_values(window, stack[:-1])
        cells = np.concatenate([basis.expand(stack[:-1]), clustered])[:, :, first:last]
        means = cells.reshape(len(cells), rows, width, columns).mean(axis=(1, 3), dtype=np.float64)
        return means, valid[:, first:last].reshape(rows, width, columns).all(axis=(0, 2)), len(clustered)
    parts = []
    with ThreadPoolExecutor(WORKERS) as executor:    # the coarse grid read here: one thread per dataset
        for cell_row, (means, whole, clustered) in zip(cell_rows, _ordered(executor, row_means, cell_rows,
                                                                           cancel)):
            target = coarse.read(Window(cell_row, 1), [1])[0, 0]
            keep = whole & ~target.mask
            parts.append((means[-clustered:, keep].T, means[:-clustered, keep].T, target.data[keep]))
    columns_ = [np.concatenate(column) for column in zip(*parts)]
    names = ('basis_pixels', 'basis_low', 'basis_target_low')
    return {'basis': basis, **{name: column.astype(np.float64) for name, column in zip(names, columns_)}}


def cell_position(coarse, image):
    """(row scale, row shift, column scale, column shift): the centre of fine pixel (i, j) lies at
    coarse pixel coordinates ((i + ½)·row scale + row shift, (j + ½)·column scale + column shift);
    both grids north-up in one CRS (core.fusion.grid.prepare_grids)."""
    coarse_x, coarse_width, _, coarse_y, _, coarse_height = coarse.geotransform
    fine_x, fine_width, _, fine_y, _, fine_height = image.geotransform
    return (fine_height / coarse_height, (fine_y - coarse_y) / coarse_height,
            fine_width / coarse_width, (fine_x - coarse_x) / coarse_width)


def _overlaps(start, count, scale, shift, cells):
    """Sparse (count × cells) matrix of the fraction of each fine pixel start..start + count lying in
    each coarse cell 0..cells along one axis (cell_position's scale and shift for that axis)."""
    sparse = require('scipy.sparse')
    edges = np.arange(start, start + count + 1) * scale + shift
    low, high = edges[:-1], edges[1:]
    first = np.floor(low).astype(int)
    pixels, touched, weights = [], [], []
    for step in range(int(math.ceil(scale)) + 1):       # a pixel touches at most ceil(scale) + 1 cells
        cell = first + step
        weight = (np.minimum(cell + 1, high) - np.maximum(cell, low)) / scale
        keep = (weight > 1e-9) & (cell >= 0) & (cell < cells)
        pixels.append(np.flatnonzero(keep))
        touched.append(cell[keep])
        weights.append(weight[keep])
    return sparse.csr_matrix((np.concatenate(weights), (np.concatenate(pixels), np.concatenate(touched))),
                             shape=(count, cells))


def collect_cell_grid(blocks, grids, settings, cancel=None):
    """Pass 1c of the local regression (core.fusion.model.fit_local), over the whole image: the
    area-weighted mean of the image bands and of their context (_context) over each coarse cell
    (a pixel split by a cell edge counts in each cell by its area there, as GDAL's 'average'
    resampling), with the grid's values; (means (2·bands, H, W), grid values (H, W)), NaN where a
    cell is not wholly inside the image or holds part of an invalid pixel."""
    row_scale, row_shift, column_scale, column_shift = cell_position(grids.coarse, grids.image)
    height, width = grids.coarse.height, grids.coarse.width
    by_column = _overlaps(0, grids.image.width, column_scale, column_shift, width).T.tocsr()
    bands = len(blocks.paths[1])
    sums = np.zeros((2 * bands + 2, height, width))       # the values, then valid and invalid area
    halo = pyramid.halo(1)
    block_rows = rows_per_block(grids.image.width, (3 * bands + 2) * BYTES_PER_BAND_PIXEL, settings.memory_mb,
                                halo)
    for window in block_windows(grids.image.height, block_rows, halo):
        check_cancel(cancel)
        stack, read_valid = blocks.read(window)
        values = np.concatenate([window.core(stack)[:-1], _context(stack, read_valid, window)])
        good = window.core(read_valid) & np.isfinite(values).all(axis=0)
        touched = np.floor(np.array([window.row, window.row + window.rows]) * row_scale + row_shift)
        first, last = max(int(touched[0]), 0), min(int(touched[1]), height - 1)
        if first > last:
            continue
        by_row = _overlaps(window.row, window.rows, row_scale, row_shift - first, last - first + 1).T.tocsr()
        layers = [np.where(good, band_values, 0.0) for band_values in values] + [good, ~good]
        for index, layer in enumerate(layers):
            sums[index, first:last + 1] += by_row @ (by_column @ np.asarray(layer, np.float64).T).T
    rows, columns = covered_rows_and_columns(grids.coarse, grids.image)
    whole = (sums[-2] > 0) & (sums[-1] < 1e-6) & rows[:, None] & columns[None, :]
    with np.errstate(invalid='ignore', divide='ignore'):
        means = np.where(whole, sums[:-2] / sums[-2], np.nan)
    target = RasterReader(grids.coarse_path, KEYS['geo']).read(Window(0, height), [1], np.float64)
    return means, target.filled(np.nan)[0]


def fuse_pixels(values, low, labels, model, mode, local_inputs=None):
    """Fused values: values/low (bands + 1, ...) with the grid last, labels (...) cluster indices;
    `local_inputs` those of the model's local regression (FusionModel.predict)."""
    if model.basis is not None:  # nonlinear regression F(MS): coherent by the residual passes
        fitted = model.predict(values[:-1], labels, local_inputs)
        return fitted + (values[-1] - low[-1]) if mode == 'paper' else fitted   # F + Geo_H, or F
    def per_pixel(coefficients):
        return coefficients[0] if len(coefficients) == 1 else coefficients[labels]
    slopes, intercepts = model.slopes, model.intercepts
    detail = np.zeros(values.shape[1:], dtype=np.float32)           # a·MS_H
    regressed_low = per_pixel(intercepts) + detail                   # Geo_Lre = a0 + a·MS_L
    for band in range(len(values) - 1):
        slope = per_pixel(slopes[:, band])
        detail += slope * (values[band] - low[band])
        if mode == 'paper':
            regressed_low += slope * low[band]
    if mode == 'coherent':
        return values[-1] + detail                                   # Geo + a·MS_H
    return regressed_low + (values[-1] - low[-1]) + detail           # Geo_Lre + Geo_H + a·MS_H


def needs_pyramid(model, mode):
    """Whether fusing a pixel needs the low frequencies, hence tiles read with pyramid.halo: not for
    the nonlinear regression in coherent mode, where F(MS) is per pixel."""
    return not (model.basis is not None and mode == 'coherent')


def tile_halo(model, mode, levels):
    """Halo rows and columns a tile is read with: the pyramid's where needs_pyramid, else halo(1)
    for the local regression's context (core.fusion.model.LocalModel), else none."""
    if needs_pyramid(model, mode):
        return pyramid.halo(levels)
    return pyramid.halo(1) if model.local is not None else 0


def fuse_tile(stack, read_valid, window, levels, model, mode, cluster_values=None):
    """(fused, cluster number 1..N, cubic grid) float32 at the own pixels of a tile, NaN where
    invalid: `stack` (bands + 1, read rows, read cols) float32 holds the image bands and the
    cubic-resampled grid last, `read_valid` their validity, both read with the window's halo
    (tile_halo); `cluster_values` the K-means bands at the own pixels (None: the image bands). A
    pure function of its arguments, so a Dask task can call it per tile with the fitted model
    broadcast."""
    local_inputs = None
    if needs_pyramid(model, mode):
        values, low, valid = split(stack, read_valid, window, levels)
    else:
        values, low, valid = window.core(stack), None, window.core(read_valid)
        if model.local is not None:
            rows = np.arange(window.row, window.row + window.rows)
            columns = np.arange(window.col, window.col + values.shape[-1])
            local_inputs = (_context(stack, read_valid, window), rows, columns)
    labels = model.labels(values[:-1] if cluster_values is None else cluster_values)
    fused = fuse_pixels(values, low, labels, model, mode, local_inputs)
    fused[~valid] = np.nan
    clusters = (labels + 1).astype(np.float32)
    clusters[~valid] = np.nan
    return fused, clusters, values[-1]


def _fuse_window(blocks, window, levels, model, mode):
    stack, read_valid = blocks.read(window)
    cluster_values = blocks.cluster_values(window)
    return fuse_tile(stack, read_valid, window, levels, model, mode, cluster_values)


def tile_columns(values_per_pixel, halo, memory_mb):
    """Columns of a tile: a multiple of TILE_COLUMN_STEP, as many as let 2·WORKERS tiles (read with
    their halo, `values_per_pixel` arrays of BYTES_PER_BAND_PIXEL) fit the budget, within
    TILE_COLUMN_RANGE: below it a tile's halo would cost more than its own pixels, so a small budget
    does not slow the run down, and above it larger tiles gain nothing."""
    per_column = (TILE_ROWS + 2 * halo) * values_per_pixel * BYTES_PER_BAND_PIXEL * 2 * WORKERS
    columns = (max(1, int(memory_mb)) * 2 ** 20 // per_column - 2 * halo) // TILE_COLUMN_STEP
    return int(min(max(columns * TILE_COLUMN_STEP, TILE_COLUMN_RANGE[0]), TILE_COLUMN_RANGE[1]))


def tile_strips(grid, columns, halo=0):
    """Strips of TILE_ROWS rows (the last shorter) over `grid`, each a list of tile Windows of
    `columns` columns left to right, halos clipped at the raster edges."""
    strips = []
    for window in block_windows(grid.height, TILE_ROWS, halo):
        strips.append([replace(window, col=col, cols=min(columns, grid.width - col), left=min(halo, col),
                               right=min(halo, max(0, grid.width - col - columns)))
                       for col in range(0, grid.width, columns)])
    return strips


def _tiled(executor, work, strips, cancel):
    """work(tile) -> arrays at the tile's own pixels, run on the workers; yields (first row, those
    arrays joined over the whole width) strip by strip in order: whole rows of output tiles, each
    written once."""
    results = _ordered(executor, work, [tile for strip in strips for tile in strip], cancel)
    width = strips[0][-1].col + strips[0][-1].cols
    for strip in strips:
        joined = None
        for tile in strip:   # each tile's arrays copied in as they come: no second strip-sized copy
            arrays = next(results)
            if joined is None:
                joined = [np.empty((tile.rows, width), array.dtype) for array in arrays]
            for target, array in zip(joined, arrays):
                target[:, tile.col:tile.col + tile.cols] = array
        yield strip[0].row, joined


def _ordered(executor, function, items, cancel):
    """Results of function(item) in order with at most 2·WORKERS calls in flight (bounded memory)."""
    pending = deque()
    for item in items:
        check_cancel(cancel)
        pending.append(executor.submit(function, item))
        if len(pending) >= 2 * WORKERS:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _Preview:
    """Every step-th row and column of some layers, for the report's maps (bounded size)."""

    def __init__(self, grid, names):
        self.step = max(1, math.ceil(max(grid.width, grid.height) / PREVIEW_SIZE))
        shape = (math.ceil(grid.height / self.step), math.ceil(grid.width / self.step))
        self.layers = {name: np.full(shape, np.nan, dtype=np.float32) for name in names}

    def add(self, row, **arrays):
        first = (-row) % self.step
        for name, array in arrays.items():
            rows = array[first::self.step, ::self.step]
            start = (row + first) // self.step
            self.layers[name][start:start + len(rows)] = rows


def apply_model(blocks, grid, levels, model, settings, fused_path, clusters_path, descriptions,
                cancel=None, progress=None, preview=None, temporary=False, means=None):
    """Pass 2: fused (and cluster) rasters written strip of tiles by strip (`temporary`: uncompressed);
    `means` (CellMeans of the fused and the cubic map, or None) are fed on the way."""
    halo = tile_halo(model, settings.mode, levels)
    columns = tile_columns(len(model.band_names) + 2, halo, settings.memory_mb)
    strips = tile_strips(grid, columns, halo)
    with ExitStack() as stack:
        options = TEMPORARY_GTIFF if temporary else None
        fused_writer = stack.enter_context(RasterWriter(fused_path, grid, 1, descriptions=[descriptions[0]],
                                                        options=options))
        cluster_writer = stack.enter_context(
            RasterWriter(clusters_path, grid, 1, descriptions=[descriptions[1]])) if clusters_path else None
        for mean in means or ():
            stack.enter_context(mean)
        executor = stack.enter_context(ThreadPoolExecutor(WORKERS))

        def work(window):
            return _fuse_window(blocks, window, levels, model, settings.mode)
        for index, (row, (fused, clusters, geo)) in enumerate(_tiled(executor, work, strips, cancel)):
            fused_writer.write(row, fused)
            if cluster_writer:
                cluster_writer.write(row, clusters)
            if preview:
                preview.add(row, fused=fused, cubic=geo, clusters=clusters)
            for mean, values in zip(means or (), (fused, geo)):
                mean.add(row, values)
            if progress:
                progress((index + 1) / len(strips))


def _stream(paths, keys, grid, memory_mb, cancel=None):
    """Yield (window, [arrays]) reading band 1 of rasters that share `grid`, NaN for nodata; `keys`
    are the parameters they come from (None for files of this run)."""
    readers = [RasterReader(path, key) for path, key in zip(paths, keys)]
    # per raster: float64 read + mask, the filled copy and PairStats' float64 temporaries
    for window in block_windows(grid.height, rows_per_block(grid.width, 64 * len(paths), memory_mb)):
        check_cancel(cancel)
        yield window, [reader.read(window, [1], np.float64).filled(np.nan)[0] for reader in readers]


def coherence(fused_path, grids, work_dir, memory_mb, cancel=None, averages=None):
    """Fused and cubic maps averaged onto the coarse cells wholly inside the image, compared with
    the coarse grid (target units); `averages`: those two averages already on the coarse grid."""
    names = ('fused', 'cubic')
    sources = averages or [
        warp_to_grid(path, grids.coarse, Path(work_dir) / f'{name}_on_coarse.vrt', 'average')
        for name, path in zip(names, (fused_path, grids.cubic_path))]
    rows, columns = covered_rows_and_columns(grids.coarse, grids.image)
    stats = {name: PairStats() for name in names}
    streams = _stream([grids.coarse_path, *sources], [KEYS['geo'], None, KEYS['geo']], grids.coarse,
                      memory_mb, cancel)
    for window, (coarse, *means) in streams:
        inside = rows[window.row:window.row + window.rows, None] & columns[None, :]
        for name, mean in zip(names, means):
            stats[name].add(mean[inside], coarse[inside])
    return {name: value.result() for name, value in stats.items()}


def cell_means(grids, work_dir, names):
    """CellMeans (one per name) when the coarse cells are whole blocks of image pixels, else an
    empty list: the averages then come from GDAL 'average' warps."""
    if cell_factors(grids.coarse, grids.image) is None:
        return []
    return [CellMeans(grids.coarse, grids.image, Path(work_dir) / f'{name}_mean.tif') for name in names]


def coarse_residual(grids, average, work_dir, iteration, memory_mb, cancel=None):
    """The correction of residual pass `iteration`: cubic(coarse − `average`), a VRT on the image
    grid; `average` the pass's source averaged onto the coarse grid."""
    work_dir = Path(work_dir)
    residual_path = work_dir / f'residual_{iteration}.tif'
    with RasterWriter(residual_path, grids.coarse, 1, descriptions=['residual'],
                      options=TEMPORARY_GTIFF) as writer:
        for window, (coarse, mean) in _stream([grids.coarse_path, average], [KEYS['geo'], None],
                                              grids.coarse, memory_mb, cancel):
            writer.write(window.row, np.ma.masked_invalid(coarse - mean))
    return warp_to_grid(residual_path, grids.image, work_dir / f'residual_{iteration}_cubic.vrt', 'cubic')


def residual_correction(source_path, target_path, grids, work_dir, iteration, settings, cancel=None,
                        temporary=False, average=None, means=()):
    """One pass of residual correction: target = source + cubic(coarse − average(source));
    `average`: the source already averaged onto the coarse grid; `means` are fed the target."""
    work_dir = Path(work_dir)
    average = average or warp_to_grid(source_path, grids.coarse, work_dir / f'average_{iteration}.vrt',
                                      'average')
    fine = coarse_residual(grids, average, work_dir, iteration, settings.memory_mb, cancel)
    description = raster_info(source_path).descriptions[0]
    options = TEMPORARY_GTIFF if temporary else None
    readers = threading.local()

    def correct(window):
        if not hasattr(readers, 'pair'):        # GDAL datasets are not thread-safe: one pair per thread
            readers.pair = (RasterReader(source_path, None), RasterReader(fine, None))  # this run's files
        fused, residual = (reader.read(window, [1], np.float32).filled(np.nan)[0] for reader in readers.pair)
        return (fused + np.nan_to_num(residual),)
    strips = tile_strips(grids.image, tile_columns(2, 0, settings.memory_mb))
    with ExitStack() as stack:
        writer = stack.enter_context(RasterWriter(target_path, grids.image, 1, descriptions=[description],
                                                  options=options))
        for mean in means:
            stack.enter_context(mean)
        executor = stack.enter_context(ThreadPoolExecutor(WORKERS))
        for row, (corrected,) in _tiled(executor, correct, strips, cancel):
            writer.write(row, corrected)
            for mean in means:
                mean.add(row, corrected)


def reference_check(fused_path, cubic_path, reference_path, reference_band, image, work_dir, memory_mb,
                    cancel=None):
    """Fused and cubic maps against a reference raster (e.g. a finer survey) on the reference's grid:
    averaged onto it where it is coarser than the image, bilinear otherwise."""
    work_dir = Path(work_dir)
    reference_vrt, info = single_band_vrt(reference_path, reference_band, work_dir / 'reference.vrt',
                                          KEYS['reference'])
    grid = info.grid
    coarser = grid.pixel_width * grid.pixel_height > image.pixel_width * image.pixel_height * 1.0001
    resample = 'average' if coarser else 'bilinear'
    names = ('fused', 'cubic')
    sources = [warp_to_grid(path, grid, work_dir / f'{name}_on_reference.vrt', resample)
               for name, path in zip(names, (fused_path, cubic_path))]
    stats = {name: PairStats() for name in names}
    keys = [KEYS['reference'], None, KEYS['geo']]  # the fused map, the cubic-resampled grid
    for _, (reference, *estimates) in _stream([reference_vrt, *sources], keys, grid, memory_mb, cancel):
        both = np.isfinite(estimates[0]) & np.isfinite(estimates[1])
        for name, estimate in zip(names, estimates):
            stats[name].add(estimate[both], reference[both])
    result = {name: value.result() for name, value in stats.items()}
    if result['fused']['n'] < 3:
        raise InputError('the reference layer overlaps fewer than 3 fused pixels; choose a reference '
                         'covering the image.', KEYS['reference'])
    result['resampling'] = resample
    return result


def _stage(progress, start, end):
    if progress is None:
        return None
    return lambda fraction: progress(start + (end - start) * fraction)


def _check_inputs(image_path, bands, mask_path, reference_path, settings):
    info = raster_info(image_path, KEYS['image'])
    if reference_path and not overlaps(info.grid, raster_info(reference_path, KEYS['reference']).grid):
        raise InputError('the reference layer does not overlap the image; choose a reference covering '
                         'the image (or leave it empty).', KEYS['reference'])
    if not bands:
        bands = list(range(1, info.band_count + 1))
    wrong = [band for band in bands if not 1 <= band <= info.band_count]
    if wrong:
        raise InputError(f'band(s) {wrong} do not exist in the image ({info.band_count} bands); '
                         'choose existing bands.', KEYS['bands'])
    if len(set(bands)) != len(bands):
        raise InputError('a band is selected twice; select each band once.', KEYS['bands'])
    wrong = [band for band in settings.cluster_bands if not 1 <= band <= info.band_count]
    if wrong:
        raise InputError(f'cluster band(s) {wrong} do not exist in the image ({info.band_count} bands); '
                         'choose existing bands or none (the regression bands).', 'CLUSTER_BANDS')
    if mask_path and not raster_info(mask_path, KEYS['mask']).grid.same_as(info.grid):
        raise InputError('the mask must be on the image grid (same size, extent and CRS); warp it '
                         'onto the image (GDAL Warp with the image as target extent and resolution).',
                         KEYS['mask'])
    if settings.mode not in MODES:
        raise InputError(f'mode must be one of {MODES}.', 'MODE')
    if settings.estimator not in ESTIMATORS:
        raise InputError(f'the regression estimator must be one of {ESTIMATORS}.', 'REGRESSION')
    names = [info.descriptions[band - 1] or f'band {band}' for band in bands]
    return bands, names


def _enough_cells(settings, grids, band_count, warnings):
    """The nonlinear regression learns from the coarse cells: with fewer than
    MIN_CELLS_PER_FEATURE per feature (a grid of a few cells, e.g. a regional survey over one
    scene) it would fit chance large-scale patterns, so the noise-aware ridge is used instead."""
    if settings.estimator != 'nonlinear':
        return settings
    rows, columns = covered_rows_and_columns(grids.coarse, grids.image)
    cells, needed = int(rows.sum()) * int(columns.sum()), MIN_CELLS_PER_FEATURE * basis_size(band_count)
    if cells >= needed:
        return settings
    warnings.append(f'the grid has {cells} cells inside the image, fewer than the {needed} the nonlinear '
                    'regression needs to learn from: the noise-aware ridge regression was used instead.')
    return replace(settings, estimator='noise')


def _local_model(blocks, grids, settings, band_count, warnings, cancel):
    """The local regression blended with the nonlinear one in coherent mode, or None (other
    settings, or a grid whose local fit would not fit in the block memory)."""
    if not (settings.local and settings.estimator == 'nonlinear' and settings.mode == 'coherent'):
        return None
    cells = grids.coarse.width * grids.coarse.height
    if local_fit_bytes(cells, band_count) > settings.memory_mb * 2 ** 20:
        warnings.append(f'the local regression of a grid of {cells} cells needs more than the block memory '
                        f'({settings.memory_mb} MB): the global regression was used alone; raise the block '
                        'memory to use it.')
        return None
    return fit_local(*collect_cell_grid(blocks, grids, settings, cancel),
                     cell_position(grids.coarse, grids.image))


def fit(blocks, grids, settings, names, warnings, log=print, cancel=None, progress=None):
    """Pass 1 and the regression: (pyramid levels, fitted FusionModel) from the sample strips (and,
    for the nonlinear estimator, the basis sample and the local regression's cell means); `settings`
    as _enough_cells leaves them."""
    if grids.ratio < 2:
        warnings.append(f'the grid is only {grids.ratio:.2f} times coarser than the image: there is '
                        'little detail to add.')
    levels = settings.levels or pyramid.levels_for_ratio(grids.ratio)
    log(f'resolution ratio {grids.ratio:.2f}, {levels} pyramid level(s), halo {pyramid.halo(levels)} px')
    sample = collect_sample(blocks, grids.image, levels, settings, cancel, progress)
    if settings.estimator == 'nonlinear':
        basis = Basis.from_pixels(sample['pixels'])
        sample.update(collect_cell_sample(blocks, grids, settings, basis, cancel)
                      or collect_basis_sample(blocks, grids.image, levels, settings, basis, cancel))
    model = fit_model(sample, names, settings.clusters, settings.min_cluster_pixels, settings.seed,
                      KEYS['bands'], KEYS['clusters'], KEYS['geo'], settings.estimator)
    model.local = _local_model(blocks, grids, settings, len(names), warnings, cancel)
    if model.local:
        log(f'local regression: bandwidth {model.local.bandwidth:g} cells, penalty '
            f'{model.local.penalty:g}, leave-one-out RMSE on the cells {model.local.cv_rmse:.4g}')
    return levels, model


def residual_passes(settings):
    """Residual-correction passes of a run: as asked, but at least one for the nonlinear regression
    in coherent mode (F alone does not keep the grid: one residual pass brings it back)."""
    if settings.estimator == 'nonlinear' and settings.mode == 'coherent':
        return settings.residual_iterations or 1
    return settings.residual_iterations


def fuse(geo_path, geo_band, image_path, bands, fused_path, clusters_path=None, mask_path=None,
         reference_path=None, reference_band=1, settings=None, log=print, progress=None,
         cancel=None):
    """Fuse band `geo_band` of the coarse grid `geo_path` with image bands `bands` (1-based, empty =
    all) into `fused_path` (and the cluster map into `clusters_path`); returns a FusionResult."""
    settings = settings or FusionSettings()
    bands, names = _check_inputs(image_path, bands, mask_path, reference_path, settings)
    with scratch_folder('rsgeochem-fusion') as work_dir:
        grids = prepare_grids(geo_path, geo_band, image_path, work_dir, KEYS['geo'], KEYS['image'], log)
        warnings = []
        settings = _enough_cells(settings, grids, len(bands), warnings)
        blocks = _Blocks(image_path, bands, grids.cubic_path, mask_path, settings.cluster_bands)
        levels, model = fit(blocks, grids, settings, names, warnings, log, cancel,
                            _stage(progress, 0.0, 0.15))
        release_freed_memory()   # the fit's samples, freed but kept by the heap through pass 2
        warnings += model.warnings
        preview = _Preview(grids.image, ('fused', 'cubic', 'clusters'))
        iterations = residual_passes(settings)
        paths = [Path(work_dir) / f'fused_{i}.tif' for i in range(iterations)] + [Path(fused_path)]
        geo_name = raster_info(geo_path).descriptions[geo_band - 1] or 'geochemical grid'
        means = cell_means(grids, work_dir, ('fused_0', 'cubic'))
        apply_model(blocks, grids.image, levels, model, settings, paths[0], clusters_path,
                    (f'{geo_name} fused ({settings.mode})', 'cluster'), cancel,
                    _stage(progress, 0.15, 0.75), preview, temporary=iterations > 0,
                    means=means)
        averages = [mean.path for mean in means]       # fused and cubic on the coarse grid, or none
        for iteration in range(iterations):
            means = cell_means(grids, work_dir, (f'fused_{iteration + 1}',))
            residual_correction(paths[iteration], paths[iteration + 1], grids, work_dir, iteration,
                                settings, cancel, temporary=iteration + 1 < iterations,
                                average=averages[0] if averages else None, means=means)
            averages[:1] = [mean.path for mean in means]
            if progress:
                progress(0.75 + 0.15 * (iteration + 1) / iterations)
        scores = coherence(fused_path, grids, work_dir, settings.memory_mb, cancel, averages or None)
        reference = None
        if reference_path:
            reference = reference_check(fused_path, grids.cubic_path, reference_path, reference_band,
                                        grids.image, work_dir, settings.memory_mb, cancel)
        if progress:
            progress(1.0)
    return FusionResult(grids, levels, model, scores['fused'], scores['cubic'], reference,
                        preview.layers, warnings)
