"""Block-wise copy through core.blockio vs gdal.Translate of the same raster (baseline).

Reports seconds, Mpix/s, the ratio ours/baseline, and the peak numpy memory of the block walk
(tracemalloc), which must not grow with the raster size.
"""
import os
import time
import tracemalloc

import numpy as np
from osgeo import gdal, osr

from rsgeochem.core.raster import blockio

SIZE = int(os.environ.get('BENCH_BLOCKIO_SIZE', 4000))
BANDS = 4
MEMORY_MB = 64


def make_input(path, size):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    grid = blockio.Grid(size, size, (500000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0), srs.ExportToWkt())
    rng = np.random.default_rng(0)
    with blockio.RasterWriter(path, grid, BANDS) as writer:
        for window in blockio.block_windows(size, 256):
            writer.write(window.row, rng.uniform(0, 1, (BANDS, window.rows, size)).astype(np.float32))


def block_copy(source, target):
    info = blockio.raster_info(source)
    with blockio.RasterWriter(target, info.grid, info.band_count) as writer:
        for window, block in blockio.read_blocks(source, memory_mb=MEMORY_MB, dtype=np.float32,
                                                 parameter='INPUT'):
            writer.write(window.row, block)


def timed(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def peak_block_memory_mb(source, target):
    tracemalloc.start()
    block_copy(source, target)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def run(work_dir):
    source = work_dir / 'input.tif'
    make_input(source, SIZE)
    small = work_dir / 'small.tif'
    make_input(small, SIZE // 4)
    baseline = timed(lambda: gdal.Translate(str(work_dir / 'baseline.tif'), str(source),
                                            creationOptions=list(blockio.GTIFF_OPTIONS)))
    ours = timed(block_copy, source, work_dir / 'ours.tif')
    megapixels = SIZE * SIZE / 1e6
    return {
        'raster': f'{SIZE}x{SIZE}x{BANDS} float32', 'memory_budget_mb': MEMORY_MB,
        'ours_seconds': round(ours, 3), 'baseline_gdal_translate_seconds': round(baseline, 3),
        'ours_mpix_per_s': round(megapixels / ours, 2),
        'ratio_time_ours_over_baseline': round(ours / baseline, 2),
        'peak_numpy_mb_full_size': round(peak_block_memory_mb(source, work_dir / 'peak.tif'), 1),
        'peak_numpy_mb_quarter_size': round(peak_block_memory_mb(small, work_dir / 'peak_small.tif'), 1),
    }
