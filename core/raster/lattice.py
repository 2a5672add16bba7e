"""Rasters on one pixel lattice: the same CRS, pixel size and alignment, any extent (e.g. a map kriged
over the samples' extent on an image's grid is a window of the image's lattice).

A raster on the lattice of a grid is read onto that grid's pixels by its integer offset: no
resampling, the pixels it does not cover come back masked.
"""
from dataclasses import dataclass

import numpy as np

from .blockio import Grid, RasterReader, Window, same_crs

ALIGNMENT_TOLERANCE = 1e-3  # pixels: a shift below this is rounding of the geotransform, not a shift


def lattice_mismatch(grid, other):
    """What keeps north-up grid `other` off `grid`'s lattice: 'CRS', 'pixel size' (or a rotated
    grid), 'alignment' (a shift by a fraction of a pixel), or '' when it is on the lattice (as any
    window of it, or larger)."""
    (_, dx, rx, _, ry, dy), (_, odx, orx, _, ory, ody) = grid.geotransform, other.geotransform
    if not same_crs(grid.crs_wkt, other.crs_wkt):
        return 'CRS'
    if rx or ry or orx or ory or not (np.isclose(dx, odx, rtol=1e-6, atol=0)
                                      and np.isclose(dy, ody, rtol=1e-6, atol=0)):
        return 'pixel size'
    if any(abs(v - round(v)) > ALIGNMENT_TOLERANCE for v in _pixel_offset(grid, other)):
        return 'alignment'
    return ''


def _pixel_offset(grid, other):
    (x0, dx, _, y0, _, dy), (ox0, _, _, oy0, _, _) = grid.geotransform, other.geotransform
    return (ox0 - x0) / dx, (oy0 - y0) / dy


def lattice_offset(grid, other):
    """(column, row) of `other`'s upper-left pixel in `grid`'s pixels when both share the lattice
    (see lattice_mismatch); else None."""
    if lattice_mismatch(grid, other):
        return None
    col, row = _pixel_offset(grid, other)
    return round(col), round(row)


def covers(offset, other, grid):
    """True when the raster at `offset` (lattice_offset) with grid `other` holds every pixel of `grid`."""
    col, row = offset
    return col <= 0 and row <= 0 and col + other.width >= grid.width and row + other.height >= grid.height


def window_within(grid, reference):
    """The part of `grid` (on `reference`'s lattice) inside `reference`, as a Grid; None when they do
    not overlap."""
    col, row = lattice_offset(reference, grid)
    col0, row0 = max(col, 0), max(row, 0)
    col1, row1 = min(col + grid.width, reference.width), min(row + grid.height, reference.height)
    if col0 >= col1 or row0 >= row1:
        return None
    x0, dx, _, y0, _, dy = reference.geotransform
    return Grid(col1 - col0, row1 - row0, (x0 + col0 * dx, dx, 0.0, y0 + row0 * dy, 0.0, dy),
                reference.crs_wkt)


@dataclass
class LatticeReader:
    """Band 1 of a raster on the lattice of `grid`, read in `grid`'s pixels (masked where it has no
    pixel). `offset` is its upper-left pixel in `grid` (lattice_offset)."""
    reader: RasterReader
    offset: tuple

    @property
    def grid(self):
        return self.reader.info.grid

    def holds(self, rows, cols):
        """Boolean array: pixels (rows, cols) of `grid` that the raster has (inside its extent)."""
        col, row = self.offset
        rows, cols = np.asarray(rows) - row, np.asarray(cols) - col
        return (rows >= 0) & (rows < self.grid.height) & (cols >= 0) & (cols < self.grid.width)

    def read(self, window, width):
        """Masked array (window.read_rows, width): rows of `window` (in `grid`'s pixels), columns
        0..width."""
        col, row = self.offset
        out = np.ma.masked_all((window.read_rows, width))
        top = max(window.read_row - row, 0)
        bottom = min(window.read_row + window.read_rows - row, self.grid.height)
        left, right = max(-col, 0), min(width - col, self.grid.width)
        if top < bottom and left < right:
            part = Window(top, bottom - top, col=left, cols=right - left)
            out[top + row - window.read_row:bottom + row - window.read_row, left + col:right + col] = \
                self.reader.read(part, [1])[0]
        return out
