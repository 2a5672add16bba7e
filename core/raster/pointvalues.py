"""Raster values at points: the value of the pixel that holds each point (no interpolation).

Pixels are read one at a time through GDAL, so the cost grows with the number of points, not with
the raster size. Points are visited tile by tile and each tile leaves GDAL's cache once its points
are read: each tile is decoded once, and the cache does not fill with one tile per point (374
samples held ~100 MB of a 1-band map's tiles, ~4x that of a 4-band image's, until the file closed).
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .blockio import open_raster, raster_info, read_window


@dataclass(frozen=True)
class PointValues:
    values: np.ndarray   # (points, bands) float64; NaN outside the raster, on nodata or non-finite
    inside: np.ndarray   # (points,) bool: the point lies in a pixel of the raster
    rows: np.ndarray     # (points,) pixel row of each point (-1 outside)
    cols: np.ndarray     # (points,) pixel column of each point (-1 outside)

    @property
    def valid(self):
        """Points inside the raster with a value in every band."""
        return self.inside & np.isfinite(self.values).all(axis=1)

    @property
    def outside_count(self):
        return int(np.count_nonzero(~self.inside))

    @property
    def nodata_count(self):
        return int(np.count_nonzero(self.inside & ~self.valid))


def pixel_of(grid, x, y):
    """(rows, cols, inside) of the pixels holding map points (x, y) of a north-up grid; a point on a
    pixel edge belongs to the pixel right of / below it."""
    col, row = grid.to_pixel(x, y)
    col, row = np.floor(np.atleast_1d(col)), np.floor(np.atleast_1d(row))
    inside = (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
    return np.where(inside, row, -1).astype(np.int64), np.where(inside, col, -1).astype(np.int64), inside


def sample_points(path, x, y, bands=None, parameter=None):
    """Values of `bands` (1-based, default all) of the raster at `path` at map points (x, y) given
    in the raster's CRS; see PointValues."""
    info = raster_info(path, parameter)
    bands = list(bands or range(1, info.band_count + 1))
    wrong = [b for b in bands if not 1 <= b <= info.band_count]
    if wrong:
        raise InputError(f'band(s) {wrong} do not exist: the raster has {info.band_count} bands.', parameter)
    rows, cols, inside = pixel_of(info.grid, x, y)
    values = np.full((rows.size, len(bands)), np.nan)
    dataset = open_raster(path, parameter)
    raster_bands = [dataset.GetRasterBand(number) for number in bands]
    nodata = [band.GetNoDataValue() for band in raster_bands]
    points = np.flatnonzero(inside)
    tile_cols, tile_rows = raster_bands[0].GetBlockSize()
    tiles = (rows[points] // tile_rows) * (info.grid.width // tile_cols + 1) + cols[points] // tile_cols
    order = np.argsort(tiles, kind='stable')
    for position, (index, tile) in enumerate(zip(points[order], tiles[order])):
        if position and tile != tiles[order[position - 1]]:
            dataset.FlushCache()
        for column, band in enumerate(raster_bands):
            value = float(read_window(band, parameter, int(cols[index]), int(rows[index]), 1, 1)[0, 0])
            if value != nodata[column]:
                values[index, column] = value
    values[~np.isfinite(values)] = np.nan
    return PointValues(values, inside, rows, cols)
