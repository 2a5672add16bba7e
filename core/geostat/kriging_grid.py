"""Kriging onto a raster grid, block by block, and the grid / external-drift helpers it needs.

Three neighbourhood modes, chosen by `krige_grid`:
- global (no neighbour limit, no radius): one factorisation of all samples serves every pixel;
- per pixel (block_pixels 0 or 1, the default): every pixel its own neighbour set, exactly (equal
  to Kriging each pixel on its own, like gstat and pykrige's moving window); the k nearest samples
  are found tile by tile (neighbour_tiles) and the pixels that share a set share its factorisation;
- shared blocks (block_pixels >= 2): square blocks of pixels take the neighbour set of their
  centre, so one factorisation serves a whole block (an approximation, 2.5-3x faster with blocks
  of 16-32 pixels and slower than exact with 8 or fewer: a pixel near a block corner may have a
  slightly different own neighbour set; bench/bench_kriging_exact.py reports the difference).
Worker threads krige blocks of rows (numpy and LAPACK release the GIL) while the calling thread
reads drift rasters and writes finished rows (core.raster.blockio.RasterWriter): memory does not grow
with the grid.
"""
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..errors import InputError
from ..linalg import single_threaded_blas
from ..raster.blockio import (
    DEFAULT_MEMORY_MB,
    Grid,
    RasterWriter,
    check_cancel,
    raster_info,
    read_window,
)
from ..raster.lattice import lattice_mismatch, lattice_offset
from .kriging import NeighbourSearch, is_global, krige_global
from .kriging_system import PAD, KrigingFrame, KrigingSystems, check_global_size
from .neighbour_tiles import TILE, TileNeighbourSets, group_by_set, hash_weights

# With shared blocks, γ to target pixels, its matrix product and the sums over that product's rows
# run in float32 (about twice the speed; deviations ~1e-6 of the values on Meuse and on the bench
# data, see test_kriging.py); factorisations and the variance's final difference stay float64.
# Exact per-pixel and global Kriging (whose dual weights amplify rounding) run fully in float64.
GRID_DTYPE = np.float32
BYTES_PER_SYSTEM_ENTRY = 8 * 6  # bytes of arrays per (sample × target) entry alive at once
# largest grid: 4 GB per float32 output, and a row of pixels in per-pixel mode (32 neighbours)
# stays within ~300 MB
MAX_GRID_PIXELS = 10 ** 9
MAX_GRID_SIDE = 50_000
BYTES_PER_EXACT_PIXEL = 192  # per pixel of a row block in exact mode (peak of its arrays, and the
#                               block that waits to be written)
MAX_EXACT_ROWS = 256        # rows of a block in exact mode (a tile row of the output files)
SYSTEMS_BATCH = 256         # neighbour sets factorised at once in exact mode
SLOT_PIXELS = 32            # pixels of one set that share one matrix product in exact mode
SLOTS_PER_PRODUCT = 128     # slots whose target matrices are built at once (~1 MB: in the processor's
#                             cache; 1024 slots took ~20 % more CPU)
MAX_THREADS = 4


def snapped_grid(reference, xmin, ymin, xmax, ymax):
    """The part of a north-up reference grid's pixel lattice that covers an extent (map units)."""
    x0, dx, _, y0, _, dy = reference.geotransform
    col0, col1 = math.floor((xmin - x0) / dx), math.ceil((xmax - x0) / dx)
    row0, row1 = math.floor((ymax - y0) / dy), math.ceil((ymin - y0) / dy)
    width, height = max(col1 - col0, 1), max(row1 - row0, 1)
    return Grid(width, height, (x0 + col0 * dx, dx, 0.0, y0 + row0 * dy, 0.0, dy), reference.crs_wkt)


def samples_grid(x, y, margin=0.0, reference=None, pixel_size=0.0, crs_wkt=''):
    """Grid over the samples' extent plus `margin` (map units): on the reference grid's lattice when
    one is given, else with square `pixel_size` pixels aligned to multiples of the pixel size."""
    xmin, xmax = float(np.min(x)) - margin, float(np.max(x)) + margin
    ymin, ymax = float(np.min(y)) - margin, float(np.max(y)) + margin
    if reference is None:
        if not pixel_size > 0:
            raise InputError('set PIXEL_SIZE (map units) or choose a REFERENCE_RASTER.', 'PIXEL_SIZE')
        reference = Grid(1, 1, (0.0, float(pixel_size), 0.0, 0.0, 0.0, -float(pixel_size)), crs_wkt)
    return snapped_grid(reference, xmin, ymin, xmax, ymax)


def check_grid_size(grid, parameter, advice):
    """InputError naming `parameter` for a grid beyond MAX_GRID_PIXELS or MAX_GRID_SIDE (memory per
    row of pixels and file size grow with it), with the pixel size that would fit and `advice`."""
    pixels = grid.width * grid.height
    if pixels <= MAX_GRID_PIXELS and max(grid.width, grid.height) <= MAX_GRID_SIDE:
        return
    factor = max(math.sqrt(pixels / MAX_GRID_PIXELS), max(grid.width, grid.height) / MAX_GRID_SIDE)
    suggested = float(f'{grid.pixel_width * factor * 1.01:.2g}')
    raise InputError(f'the grid would have {grid.width} x {grid.height} = {pixels:.3g} pixels of '
                     f'{grid.pixel_width:g} map units (at most {MAX_GRID_PIXELS:.0e} pixels and '
                     f'{MAX_GRID_SIDE} per side); a pixel size of {suggested:g} or more fits: {advice}',
                     parameter)


def count_inside(grid, x, y):
    xmin, ymin, xmax, ymax = grid.extent
    return int(np.count_nonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax)))


class DriftRasters:
    """External drift rasters on the output grid's lattice: every band of each raster is one drift
    variable. Values outside a raster or equal to its nodata are NaN."""

    def __init__(self, paths, grid, parameter='DRIFT_RASTERS'):
        self.grid, self.parameter = grid, parameter
        self.datasets, self.offsets, self.nodata = [], [], []
        for path in paths:
            info = raster_info(path, parameter)
            self._check_lattice(info, path, parameter)
            self.datasets.append(gdal.Open(str(path)))
            self.offsets.append(lattice_offset(info.grid, grid))
            self.nodata.append(info.nodata)
        self.count = sum(len(n) for n in self.nodata)

    def _check_lattice(self, info, path, parameter):
        problem = {'CRS': 'has another CRS than the output grid',
                   'pixel size': 'has pixels of another size than the output grid',
                   'alignment': 'is shifted against the output grid by a fraction of a pixel',
                   }.get(lattice_mismatch(info.grid, self.grid))
        if problem:
            raise InputError(f'drift raster "{path}" {problem}; put it on the grid of REFERENCE_RASTER '
                             'first (Raster > Align Rasters, or GDAL Warp with the reference\'s CRS, pixel '
                             'size and extent), or choose it as REFERENCE_RASTER.', parameter)

    def read(self, row, rows, col=0, cols=None):
        """Drift values (count, rows, cols) of grid rows row..row+rows and columns col..col+cols (default
        to the grid's right edge), NaN where missing."""
        cols = self.grid.width - col if cols is None else cols
        out = np.full((self.count, rows, cols), np.nan)
        band_index = 0
        for dataset, (col0, row0), nodata in zip(self.datasets, self.offsets, self.nodata):
            # the window in this raster's pixels, clipped to the raster
            r0, r1 = max(row0 + row, 0), min(row0 + row + rows, dataset.RasterYSize)
            c0, c1 = max(col0 + col, 0), min(col0 + col + cols, dataset.RasterXSize)
            for band_number in range(1, dataset.RasterCount + 1):
                if r1 > r0 and c1 > c0:
                    values = read_window(dataset.GetRasterBand(band_number), self.parameter, c0, r0,
                                         c1 - c0, r1 - r0)
                    values = values.astype(np.float64)
                    if nodata[band_number - 1] is not None:
                        values[values == nodata[band_number - 1]] = np.nan
                    out[band_index, r0 - row0 - row:r1 - row0 - row, c0 - col0 - col:c1 - col0 - col] = values
                band_index += 1
        return out

    def at_points(self, x, y):
        """Drift values (n, count) at the pixels holding map points (x, y), NaN outside/nodata."""
        col, row = self.grid.to_pixel(x, y)
        col, row = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
        values = np.full((len(col), self.count), np.nan)
        for index, (c, r) in enumerate(zip(col, row)):
            if 0 <= r < self.grid.height and 0 <= c < self.grid.width:
                values[index] = self.read(int(r), 1, int(c), 1)[:, 0, 0]
        return values


@dataclass(frozen=True)
class GridSummary:
    mode: str            # 'global', 'shared blocks' or 'per pixel'
    block_pixels: int    # side of shared-neighbourhood blocks (1 = per pixel, 0 = global)
    pixels: int
    nodata_pixels: int   # pixels left without a prediction (missing drift, too few neighbours)


def krige_grid(samples, model, grid, prediction_path, variance_path=None, drift=None, n_neighbours=0,
               radius=0.0, block_pixels=0, memory_mb=DEFAULT_MEMORY_MB, progress=None, cancel=None,
               threads=0):
    """Krige `samples` (core.geostat.kriging.Samples, coordinates in the grid CRS) onto `grid` (Grid)
    and write float32 GeoTIFFs of prediction and (optionally) variance.

    `drift` is a DriftRasters (or None for ordinary Kriging) with the drifts of `samples.drift`;
    `block_pixels` 0 or 1 gives every pixel its own neighbourhood (exact), 2 or more shares the
    neighbourhood of square blocks of that side (approximate); `threads` 0 uses up to MAX_THREADS
    processor cores, each with its share of `memory_mb`. Returns a GridSummary.
    """
    frame = KrigingFrame(model, samples.x, samples.y, samples.z, samples.drift)
    n_drift = samples.drift.shape[1]
    if n_drift != (drift.count if drift is not None else 0):
        raise InputError('the samples carry another number of drift values than DRIFT_RASTERS has bands.',
                         'DRIFT_RASTERS')
    threads = int(threads) or min(os.cpu_count() or 1, MAX_THREADS)
    memory_mb = memory_mb / threads
    if is_global(len(samples), n_neighbours, radius):
        check_global_size(len(samples))
        walker = _GlobalWalker(frame, grid, memory_mb, bool(variance_path))
    else:
        search = NeighbourSearch(frame, n_neighbours, radius)
        walker = (_ExactWalker(frame, grid, search, memory_mb, bool(variance_path)) if int(block_pixels) <= 1
                  else _BlockWalker(frame, grid, search, int(block_pixels), memory_mb, bool(variance_path)))
    nodata_pixels = 0
    with ExitStack() as stack:
        stack.enter_context(single_threaded_blas())
        prediction_writer = stack.enter_context(RasterWriter(prediction_path, grid, 1,
                                                             descriptions=['prediction'], smooth=True))
        variance_writer = stack.enter_context(RasterWriter(variance_path, grid, 1, descriptions=[
            'kriging variance'], smooth=True)) if variance_path else None
        for row, rows, prediction, variance in _kriged_rows(walker, frame, drift, grid, threads, cancel):
            nodata_pixels += int(np.count_nonzero(~np.isfinite(prediction)))
            prediction_writer.write(row, prediction)
            if variance_writer is not None:
                np.maximum(variance, 0.0, out=variance)  # rounding can leave -1e-16 at samples
                variance_writer.write(row, variance)
            if progress is not None:
                progress((row + rows) / grid.height)
    return GridSummary(walker.mode, walker.block_pixels, grid.width * grid.height, nodata_pixels)


def _kriged_rows(walker, frame, drift, grid, threads, cancel):
    """(row, rows, prediction, variance) of each row block in order. Worker threads krige the blocks
    (numpy and LAPACK release the GIL) while the caller writes finished ones; GDAL reads and
    writes stay in the calling thread."""
    pool = ThreadPoolExecutor(max_workers=threads)
    pending = deque()
    try:
        for row, rows in walker.row_blocks():
            check_cancel(cancel)
            f0 = _drift_rows(frame, drift, row, rows, grid.width)
            pending.append((row, rows, pool.submit(walker.krige, row, rows, f0, cancel)))
            if len(pending) > threads:
                row_, rows_, future = pending.popleft()
                yield (row_, rows_, *future.result())
        while pending:
            row_, rows_, future = pending.popleft()
            yield (row_, rows_, *future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _drift_rows(frame, drift, row, rows, width):
    """Drift rows f0 (rows, width, p) of grid rows row..row+rows in the frame's standardisation."""
    if drift is None:
        return np.ones((rows, width, 1))
    return frame.drift_matrix(np.moveaxis(drift.read(row, rows), 0, -1))


def row_blocks(height, rows):
    """(first row, row count) of blocks of `rows` rows covering `height` rows."""
    return [(row, min(rows, height - row)) for row in range(0, height, rows)]


def _pixel_coordinates(frame, grid, row, rows):
    """Scaled coordinates of every pixel centre in rows row..row+rows, flattened row-major."""
    xs, ys = grid.pixel_centres(row, rows)
    tx, ty = frame.scale_xy(xs, ys)
    return np.tile(tx, rows), np.repeat(ty, grid.width)


class _GlobalWalker:
    """One system of every sample for every pixel; without `variance` (krige returns None for it) only
    its prediction row is applied."""
    mode, block_pixels = 'global', 0

    def __init__(self, frame, grid, memory_mb, variance=True):
        self.frame, self.grid = frame, grid
        self.systems = KrigingSystems(frame, np.arange(len(frame.z))[None], variance)
        per_row = grid.width * len(frame.z) * BYTES_PER_SYSTEM_ENTRY
        self.rows = max(1, int(memory_mb * 2 ** 20 // per_row))

    def row_blocks(self):
        return row_blocks(self.grid.height, self.rows)

    def krige(self, row, rows, f0, cancel):
        tx, ty = _pixel_coordinates(self.frame, self.grid, row, rows)
        prediction, variance = krige_global(self.systems, tx, ty, f0.reshape(len(tx), -1), cancel=cancel)
        return prediction.reshape(rows, -1), None if variance is None else variance.reshape(rows, -1)


class _ExactWalker:
    """Every pixel its own neighbour set, exactly: the k nearest samples found tile by tile
    (neighbour_tiles), or with a search radius a k-d tree query per pixel. The pixels of a row block
    that share a set share one factorisation; each pixel then costs its right-hand side and one
    matrix product, in float64 (equal to per-pixel Kriging, krige_points, to rounding); without
    `variance` (krige returns None for it) a dot product."""
    mode, block_pixels = 'per pixel', 1

    def __init__(self, frame, grid, search, memory_mb, variance=True):
        self.frame, self.grid, self.search = frame, grid, search
        self.variance = variance
        self.tiles = TileNeighbourSets(search.tree, search.k) if not np.isfinite(search.radius) else None
        rows = int(memory_mb * 2 ** 20 // (grid.width * BYTES_PER_EXACT_PIXEL))
        self.rows = min(max(TILE, rows - rows % TILE), MAX_EXACT_ROWS)
        # does any sample sit exactly on a pixel centre (coordinates compared as krige computes them)?
        tx, ty = frame.scale_xy(*grid.pixel_centres(0, grid.height))
        self.samples_on_centres = bool(np.any(np.isin(frame.x, tx) & np.isin(frame.y, ty)))

    def row_blocks(self):
        return row_blocks(self.grid.height, self.rows)

    def krige(self, row, rows, f0, cancel):
        tx, ty = self.frame.scale_xy(*self.grid.pixel_centres(row, rows))
        width = len(tx)
        order = None
        if self.tiles is not None:
            labels, sets, order = self.tiles.label_sorted(tx, ty)
        else:
            labels, sets = group_by_set(self.search.sets(np.tile(tx, rows), np.repeat(ty, width)),
                                        hash_weights(self.search.n))
        labels = labels.ravel()
        # one element more at the end: what slot padding (PAD = -1) reads and writes, then dropped
        f0 = f0.reshape(len(labels), -1)
        f0 = np.concatenate([f0, f0[:1]])
        xs, ys = np.append(np.tile(tx, rows), tx[0]), np.append(np.repeat(ty, width), ty[0])
        prediction = np.empty(len(labels) + 1)
        variance = np.empty(len(labels) + 1) if self.variance else None
        slot_set, slot_pixels = pixel_slots(labels, len(sets), SLOT_PIXELS, order)
        first_slot = np.searchsorted(slot_set, np.arange(0, len(sets) + SYSTEMS_BATCH, SYSTEMS_BATCH))
        for batch, start in enumerate(range(0, len(sets), SYSTEMS_BATCH)):
            check_cancel(cancel)
            systems = KrigingSystems(self.frame, sets[start:start + SYSTEMS_BATCH], self.variance)
            for slot in range(first_slot[batch], first_slot[batch + 1], SLOTS_PER_PRODUCT):
                part = slice(slot, min(slot + SLOTS_PER_PRODUCT, first_slot[batch + 1]))
                pixels, index = slot_pixels[part], slot_set[part] - start
                gamma = systems.nugget_free_gamma(xs[pixels], ys[pixels], index, self.samples_on_centres)
                prediction[pixels], v = systems.predict(gamma, f0[pixels], self.frame.model.nugget, index)
                if v is not None:
                    variance[pixels] = v
        prediction = prediction[:-1].reshape(rows, -1)
        return prediction, None if variance is None else variance[:-1].reshape(rows, -1)


def pixel_slots(labels, groups, width, order=None):
    """Pixels sorted by group into slots of `width`: (group of each slot (S,) ascending, pixel indices
    (S, width) padded with PAD); a group of c pixels fills ceil(c / width) slots. `order`: the
    pixels already sorted by label (stably), if known."""
    order = np.argsort(labels, kind='stable') if order is None else order
    counts = np.bincount(labels, minlength=groups)
    slots_per_group = -(-counts // width)
    slot_set = np.repeat(np.arange(groups), slots_per_group)
    first_slot = np.cumsum(slots_per_group) - slots_per_group
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(order)) - starts[labels[order]]           # position within its group
    slot_pixels = np.full((len(slot_set), width), PAD, dtype=np.int64)
    slot_pixels[first_slot[labels[order]] + rank // width, rank % width] = order
    return slot_set, slot_pixels


class _BlockWalker:
    """Square blocks of `side` pixels share the neighbour set of their centre; a row of blocks is
    processed in batches of blocks that fit the memory budget. Without `variance` (krige returns None
    for it) only the prediction row of each system is applied."""
    mode = 'shared blocks'

    def __init__(self, frame, grid, search, side, memory_mb, variance=True):
        self.frame, self.grid, self.search = frame, grid, search
        self.variance = variance
        self.block_pixels = self.side = side
        k = search.k
        per_block = (k * k + k * side * side) * BYTES_PER_SYSTEM_ENTRY
        self.batch = max(1, int(memory_mb * 2 ** 20 // per_block))

    def row_blocks(self):
        return row_blocks(self.grid.height, self.side)

    def krige(self, row, rows, f0, cancel):
        side, width = self.side, self.grid.width
        blocks = -(-width // side)
        x0, dx, _, y0, _, dy = self.grid.geotransform
        # pixel-centre coordinates of each block's columns and rows, beyond the grid edge too
        columns = np.arange(blocks * side).reshape(blocks, side)
        bx, by = self.frame.scale_xy(x0 + dx * (columns + 0.5), y0 + dy * (row + np.arange(side) + 0.5))
        cx, cy = self.frame.scale_xy(x0 + dx * (columns[:, 0] + side / 2.0),
                                     np.full(blocks, y0 + dy * (row + side / 2.0)))
        f0 = np.pad(f0, ((0, side - rows), (0, blocks * side - width), (0, 0)), constant_values=np.nan)
        f0 = f0.reshape(side, blocks, side, -1).transpose(1, 0, 2, 3).reshape(blocks, side * side, -1)
        prediction = np.empty((blocks, side, side))
        variance = np.empty((blocks, side, side)) if self.variance else None
        sets = self.search.sets(cx, cy)
        for start in range(0, blocks, self.batch):
            check_cancel(cancel)
            part = slice(start, start + self.batch)
            systems = KrigingSystems(self.frame, sets[part], self.variance)
            p, v = systems.predict(self._block_matrix(systems, bx[part], by, f0[part]), f0[part],
                                   self.frame.model.nugget)
            prediction[part] = p.reshape(-1, side, side)
            if variance is not None:
                variance[part] = v.reshape(-1, side, side)
        prediction = prediction.transpose(1, 0, 2).reshape(side, -1)[:rows, :width]
        if variance is not None:
            variance = variance.transpose(1, 0, 2).reshape(side, -1)[:rows, :width]
        return prediction, variance

    def _block_matrix(self, systems, bx, by, f0):
        """Target matrix [γ₀ᵀ - nugget, f₀] (T, side², N + p) of blocks, γ₀ from separable squared
        distances dx² + dy² of block columns and rows, computed in place; in memory (T, N + p, side²),
        the order in which the variogram and the (side² x N + p) @ (N + p x N + p) products ran
        fastest."""
        (blocks, n), p = systems.sx.shape, f0.shape[-1]
        x = np.empty((blocks, n + p, self.side * self.side), dtype=GRID_DTYPE)
        dx2 = (systems.sx[:, :, None] - bx[:, None, :]).astype(GRID_DTYPE)     # (T, N, side)
        dy2 = (systems.sy[:, :, None] - by[None, None, :]).astype(GRID_DTYPE)  # (T, N, side)
        dx2 *= dx2
        dy2 *= dy2
        gamma = x[:, :n]
        np.add(dy2[:, :, :, None], dx2[:, :, None, :], out=gamma.reshape(blocks, n, self.side, self.side))
        model = systems.frame.model
        model.scaled_squared(gamma, overwrite=True, with_nugget=False)  # see KrigingSystems.predict
        zero_x, zero_y = dx2 == 0, dy2 == 0
        if model.nugget and zero_x.any() and zero_y.any():  # a pixel centre on a sample: γ₀ = σ²ₑ
            gamma[(zero_y[:, :, :, None] & zero_x[:, :, None, :]).reshape(gamma.shape)] = \
                model.error_variance - model.nugget
        if not systems.valid.all():
            gamma[~systems.valid] = 0.0
        x[:, n:] = f0.transpose(0, 2, 1)
        return x.transpose(0, 2, 1)
