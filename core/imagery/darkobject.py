"""Dark-object subtraction (DOS1, COST) on TOA reflectance.

General image-based model (Chavez 1996, Photogramm. Eng. Remote Sens. 62(9), 1025-1036; Song et
al. 2001, Remote Sens. Environ. 75, 230-244), written in TOA-reflectance units with Tv = 1 and
Edown = 0:

    path reflectance   rho_p = rho_dark - 0.01 * Tz     (the dark object is assumed 1 % reflective)
    surface            rho   = (rho_toa - rho_p) / Tz,  clipped at 0

DOS1: Tz = 1. COST: Tz = cos(theta_z) (Chavez 1996).

The dark value of each band is the TOA reflectance of its k-th darkest valid pixel with
k = min(PIXEL_COUNT, ceil(PERCENTILE % of the valid pixels)), read from a histogram accumulated
block by block. A count meant for full scenes (Chavez's 1000 pixels) thus shrinks on small
subsets instead of landing mid-histogram; and unlike a "lowest DN holding N pixels" rule it does
not depend on bit depth (on a 16-bit subset no single DN holds 1000 pixels, which made GRASS
i.landsat.toar fall back to DN 1).
"""
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..raster.blockio import DEFAULT_MEMORY_MB, DEFAULT_NODATA, RasterWriter, raster_info, read_blocks
from .calibration import exact_read_type, sensor_band_name

DOS1, COST = 'DOS1', 'COST'
DARK_OBJECT_REFLECTANCE = 0.01
BIN_WIDTH = 1e-5          # reflectance units: the dark value is the lower edge of its bin
LOW, HIGH = -1.0, 3.0     # histogram range; values outside fall in an under/overflow bin
INPUT = 'INPUT'


class DarkObjectHistogram:
    """Per-band counts of TOA reflectance in BIN_WIDTH bins over LOW..HIGH, plus an underflow
    (index 0) and an overflow bin (last index); fed one masked block at a time."""

    def __init__(self, band_count, bin_width=BIN_WIDTH, low=LOW, high=HIGH):
        self.bin_width, self.low = bin_width, low
        self.bins = int(round((high - low) / bin_width))
        self.counts = np.zeros((band_count, self.bins + 2), dtype=np.int64)

    def add(self, block):
        """Count the valid pixels of a (bands, rows, cols) masked block."""
        data, invalid = np.ma.getdata(block), np.ma.getmaskarray(block)
        for band in range(self.counts.shape[0]):
            # bin index floor((value - low) / width) + 1, clipped, worked out in place on the copy of
            # the valid values (exact in float64: the counts are those of the formula)
            index = data[band][~invalid[band]].astype(np.float64, copy=False)
            np.subtract(index, self.low, out=index)
            np.divide(index, self.bin_width, out=index)
            np.floor(index, out=index)
            index += 1
            np.clip(index, 0, self.bins + 1, out=index)
            self.counts[band] += np.bincount(index.astype(np.intp), minlength=self.bins + 2)

    def value(self, index):
        return self.low + (index - 1) * self.bin_width

    def merge(self, *others):
        """Add the counts of histograms of other parts of the image (same bins); returns self."""
        for other in others:
            self.counts += other.counts
        return self


def read_histogram(path, memory_mb=DEFAULT_MEMORY_MB, progress=None, cancel=None, parameter=INPUT):
    """DarkObjectHistogram of every band of the raster at `path`, accumulated block by block."""
    info = raster_info(path, parameter)
    histogram = DarkObjectHistogram(info.band_count)
    for _, block in read_blocks(path, memory_mb=memory_mb, extra_bytes_per_pixel=24 * info.band_count,
                                dtype=exact_read_type(info), cancel=cancel, progress=progress,
                                parameter=parameter):
        histogram.add(block)
    return histogram


@dataclass(frozen=True)
class DarkObject:
    valid: int        # valid pixels of the band
    count: int        # k: the dark value is the k-th darkest pixel
    value: float      # dark-object TOA reflectance


def band_names(descriptions):
    """Names of a TOA reflectance raster's bands: "B4", not "B4 TOA reflectance (unitless)", for an
    output of radiometriccalibration; "band i" for a band without description."""
    return [sensor_band_name(description) or f'band {i + 1}' for i, description in enumerate(descriptions)]


def surface_descriptions(names, method):
    """Band descriptions of the corrected raster ("B4 DOS1 surface reflectance")."""
    return [f'{name} {method} surface reflectance' for name in names]


def dark_objects(histogram, pixel_count=1000, percentile=0.01, names=None, parameter=INPUT):
    """DarkObject per band from an accumulated histogram."""
    objects = []
    for band, counts in enumerate(histogram.counts):
        name = names[band] if names else f'band {band + 1}'
        valid = int(counts.sum())
        if valid == 0:
            raise InputError(f'{name} has no valid pixels (all nodata); choose another raster or band.',
                             parameter)
        k = max(1, min(int(pixel_count), math.ceil(percentile / 100.0 * valid)))
        index = int(np.searchsorted(np.cumsum(counts), k))
        if index == 0 or index == histogram.bins + 1:
            raise InputError(f'{name}: the dark pixels lie outside reflectance {LOW:g}..{HIGH:g}; the '
                             'input must be TOA reflectance (run rsgeochem:radiometriccalibration '
                             'first).', parameter)
        objects.append(DarkObject(valid, k, histogram.value(index)))
    return objects


def transmittance(method, sun_elevation=None):
    """Tz: 1 for DOS1, cos(theta_z) for COST (Chavez 1996)."""
    if method == DOS1:
        return 1.0
    if sun_elevation is None or not 0.0 < sun_elevation <= 90.0:
        raise InputError('COST needs the sun elevation (degrees, 0-90): give it or a METADATA file '
                         'that has it.', 'SUN_ELEVATION')
    return math.cos(math.radians(90.0 - sun_elevation))


def path_reflectance(dark_value, tz):
    """rho_p = rho_dark - 0.01 Tz: TOA reflectance of the dark object minus its assumed 1 %."""
    return dark_value - DARK_OBJECT_REFLECTANCE * tz


def subtract(toa, path, tz):
    """Surface reflectance (rho_toa - rho_p) / Tz per band of a (bands, rows, cols) block, >= 0."""
    path = np.asarray(path, dtype=np.float64)[:, None, None]
    # on the data, masked or not, then masked again: numpy.ma's domain-checked division is slow
    surface = np.ma.getdata(toa) - path
    surface /= tz  # in place: one block-sized array, not two
    return np.ma.MaskedArray(np.maximum(surface, 0.0, out=surface), np.ma.getmaskarray(toa))


def subtract_raster(path, output, path_values, tz, descriptions, memory_mb=DEFAULT_MEMORY_MB, progress=None,
                    cancel=None, parameter=INPUT):
    """Surface reflectance of the raster at `path` written to a float32 GeoTIFF, block by block."""
    info = raster_info(path, parameter)
    with RasterWriter(output, info.grid, info.band_count, DEFAULT_NODATA, descriptions) as writer:
        for window, block in read_blocks(path, memory_mb=memory_mb,
                                         extra_bytes_per_pixel=24 * info.band_count,
                                         dtype=exact_read_type(info), cancel=cancel, progress=progress,
                                         parameter=parameter):
            writer.write(window.row, subtract(block, path_values, tz))
