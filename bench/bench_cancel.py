"""How long a cancelled raster output takes to go away: rows are written block by block (as
kriging writes a 20000-pixel-wide grid), then the run is cancelled. Ours: core.raster.blockio's
RasterWriter, which flushes each complete row of tiles as it is written. Baseline: the same writes
into a plain GDAL dataset that is closed and deleted on cancel (GDAL first compresses every block
still in its cache into the file: what RasterWriter did before).
"""
import os
import time

import numpy as np
from osgeo import gdal

from rsgeochem.core.errors import CancelledError
from rsgeochem.core.raster import blockio

WIDTH = int(os.environ.get('BENCH_CANCEL_WIDTH', 20000))
ROWS_BEFORE_CANCEL = 1000
BLOCK_ROWS = 40


def blocks(rows):
    rng = np.random.default_rng(0)
    for row in range(0, rows, BLOCK_ROWS):
        yield row, rng.normal(10, 1, (BLOCK_ROWS, WIDTH)).astype(np.float32)  # like a smooth map


def ours(work_dir, grid):
    started = None
    try:
        with blockio.RasterWriter(work_dir / 'ours.tif', grid) as writer:
            for row, values in blocks(ROWS_BEFORE_CANCEL):
                writer.write(row, values)
            started = time.perf_counter()
            raise CancelledError('bench')
    except CancelledError:
        return time.perf_counter() - started


def baseline(work_dir, grid):
    path = str(work_dir / 'baseline.tif')
    dataset = gdal.GetDriverByName('GTiff').Create(path, grid.width, grid.height, 1, gdal.GDT_Float32,
                                                   list(blockio.GTIFF_OPTIONS))
    for row, values in blocks(ROWS_BEFORE_CANCEL):
        dataset.GetRasterBand(1).WriteArray(values, 0, row)
    started = time.perf_counter()
    dataset = None  # noqa: F841 - closing flushes the cache into the file
    os.remove(path)
    return time.perf_counter() - started


def run(work_dir):
    grid = blockio.Grid(WIDTH, 4 * ROWS_BEFORE_CANCEL, (500000.0, 1.0, 0.0, 5600000.0, 0.0, -1.0), '')
    seconds_ours, seconds_baseline = ours(work_dir, grid), baseline(work_dir, grid)
    return {'raster': f'{WIDTH} columns, cancelled after {ROWS_BEFORE_CANCEL} rows',
            'ours_seconds_to_return': round(seconds_ours, 3),
            'baseline_gdal_close_seconds': round(seconds_baseline, 3),
            'ratio_time_ours_over_baseline': round(seconds_ours / seconds_baseline, 3),
            'partial_files_left': sorted(name for name in os.listdir(work_dir) if 'partial' in name)}
