"""GeoTIFF compression of intermediate float32 rasters: CPU seconds to write and read back, and
file size, for DEFLATE (GDAL's default level 6, the plugin's former default), DEFLATE level 1,
ZSTD level 1 and LZW, each with the floating-point predictor, ZSTD level 1 without a predictor (the
plugin's default, core.raster.blockio.GTIFF_OPTIONS) and uncompressed, in alternated rounds (best
of each).

Data: a 4-band surface-reflectance scene (DN x gain, so quantised like a real calibrated image),
resources/sample/gf2like_pms1_dn.tif calibrated with the sample's gains and mirror-tiled to
SIZE x SIZE (RSGEOCHEM_BENCH_COMPRESSION_SIZE, default 4096), and a smooth kriged-like band.
"""
import os
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

CHECKOUT = Path(__file__).resolve().parent.parent
SIZE = int(os.environ.get('RSGEOCHEM_BENCH_COMPRESSION_SIZE', '4096'))
ROUNDS = 2
GAINS = (0.1322, 0.155, 0.1477, 0.1613)
BASE = ['TILED=YES', 'BIGTIFF=IF_SAFER', 'NUM_THREADS=2']
CONFIGS = {
    'DEFLATE (former default)': ['COMPRESS=DEFLATE', 'PREDICTOR=3'],
    'DEFLATE level 1': ['COMPRESS=DEFLATE', 'PREDICTOR=3', 'ZLEVEL=1'],
    'ZSTD level 1, floating-point predictor': ['COMPRESS=ZSTD', 'PREDICTOR=3', 'ZSTD_LEVEL=1'],
    'ZSTD level 1 (default)': ['COMPRESS=ZSTD', 'ZSTD_LEVEL=1'],
    'LZW': ['COMPRESS=LZW', 'PREDICTOR=3'],
    'uncompressed': [],
}


def mirror_index(size, tile):
    copy, offset = np.divmod(np.arange(size), tile)
    return np.where(copy % 2 == 1, tile - 1 - offset, offset)


def reflectance(size):
    dn = gdal.Open(str(CHECKOUT / 'resources' / 'sample' / 'gf2like_pms1_dn.tif')).ReadAsArray()
    scene = dn[:, mirror_index(size, dn.shape[1])][:, :, mirror_index(size, dn.shape[2])]
    return (scene * np.array(GAINS)[:, None, None] / 1000.0).astype(np.float32)


def kriged_like(size):
    ramp = np.linspace(0, 6, size)
    return (3 + np.sin(ramp)[None, :] * np.cos(1.3 * ramp)[:, None]).astype(np.float32)[None]


def write_and_read(path, data, options):
    cpu = time.process_time()
    dataset = gdal.GetDriverByName('GTiff').Create(str(path), data.shape[2], data.shape[1], len(data),
                                                   gdal.GDT_Float32, BASE + options)
    for band, values in enumerate(data):
        dataset.GetRasterBand(band + 1).WriteArray(values)
    dataset = None
    written = time.process_time() - cpu
    cpu = time.process_time()
    gdal.Open(str(path)).ReadAsArray()
    read = time.process_time() - cpu
    size = path.stat().st_size
    path.unlink()
    return written, read, size


def run(work_dir):
    result = {'grid': f'{SIZE}x{SIZE}', 'gdal': gdal.__version__}
    for name, data in (('reflectance_4_bands', reflectance(SIZE)), ('kriged_1_band', kriged_like(SIZE))):
        times = {config: [] for config in CONFIGS}
        for _ in range(ROUNDS):
            for config, options in CONFIGS.items():
                times[config].append(write_and_read(Path(work_dir) / 'c.tif', data, options))
        reference = min(t[0] for t in times['DEFLATE (former default)'])
        result[name] = {config: {'write_cpu_s': round(min(t[0] for t in runs), 2),
                                 'read_cpu_s': round(min(t[1] for t in runs), 2),
                                 'size_mb': round(runs[0][2] / 1e6, 1),
                                 'write_cpu_ratio_vs_deflate': round(min(t[0] for t in runs) / reference, 2)}
                        for config, runs in times.items()}
    return result
