"""Focal mean of a content map before thresholding, written block by block.

Why: a map predicted pixel by pixel carries pixel-scale prediction noise, and a kriged map with a
nugget spikes at every sample (Kriging is exact there), so thresholding the raw map outlines single
pixels. The mean over a square window of `size` x `size` pixels keeps structures at least as wide
as the window. A pixel whose window is not entirely valid (it crosses the raster edge, a nodata or
a masked pixel) gets no value: edges, shores and the borders of masked areas hold mixed pixels and
processing artefacts, the usual source of false anomalies there.

scipy.ndimage.uniform_filter computes the window sums; the rows of the window come from the
block reader's halo, so memory stays bounded by the block budget.
"""
import numpy as np
from scipy import ndimage

from ..raster.blockio import DEFAULT_NODATA, RasterWriter
from .areas import ValueSource

# the smoothed map is read back four times (statistics, histograms, areas) and deleted: uncompressed
SCRATCH_GTIFF = ('TILED=YES', 'BIGTIFF=IF_SAFER')


def window_mean(values, window, size):
    """Focal mean of the block's own rows of `values` (masked, read with a halo of size // 2 rows);
    masked where the size x size window holds an invalid pixel or leaves the raster."""
    halo = size // 2
    missing = ((halo - window.top, halo - window.bottom), (0, 0))   # halo rows beyond the raster edge
    valid = np.pad(~np.ma.getmaskarray(values), missing, constant_values=False)
    data = np.where(valid, np.pad(np.ma.getdata(values), missing), 0.0)  # nodata may be NaN
    mean = ndimage.uniform_filter(data, size, mode='constant', cval=0.0)
    core = slice(halo, halo + window.rows)
    # complete windows: the smallest validity (0/1) in the window is 1; a byte filter, not a mean
    complete = ndimage.minimum_filter(valid.view(np.uint8), size, mode='constant', cval=0)[core].view(bool)
    return np.ma.MaskedArray(np.where(complete, mean[core], 0.0), ~complete)


def focal_mean(source, size, path, progress=None, cancel=None):
    """Write the size x size focal mean of `source` (a ValueSource, mask applied) to the GeoTIFF
    `path`; returns (ValueSource of it, number of pixels with a value). `size` is odd."""
    if size % 2 != 1:
        raise ValueError(f'the smoothing window must have an odd size, not {size}')
    count = 0
    with RasterWriter(path, source.info.grid, 1, DEFAULT_NODATA, ['focal mean'],
                      options=SCRATCH_GTIFF) as writer:
        # per pixel besides the read: the mask's read and the masking copy, the padded validity and
        # data, the filtered sum and validity minimum, the mean and its mask (~90 bytes in all
        # measured on 7300 x 6900 with a second float sum in place of the minimum: kept, since the
        # block rows set where the column sums start, and so the last bits of the mean)
        for window, values in source.blocks(progress, cancel, extra_bytes_per_pixel=72, halo=size // 2):
            smoothed = window_mean(values, window, size)
            count += smoothed.count()
            writer.write(window.row, smoothed)
    keys = (source.input_key, 'BAND', 'MASK')
    return ValueSource(str(path), 1, memory_mb=source.memory_mb, keys=keys), count
