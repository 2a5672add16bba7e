"""Tiles of a raster grid for distributed runs: each tile is a rectangle of output pixels plus the
halo a step needs, read through a GDAL VRT window of the inputs (no copy) and written as its own
GeoTIFF tile."""
import math
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from osgeo import gdal

from ..raster.blockio import Grid

gdal.UseExceptions()

# Output tile side (pixels): a multiple of the 256-pixel blocks of our GeoTIFFs and COG's 512, big
# enough that a task's fixed costs (opening files, a model session) stay small against its work.
DEFAULT_TILE_SIZE = 1024


@dataclass(frozen=True)
class Tile:
    """Own pixels col..col+cols, row..row+rows of the full grid; halo pixels around them are read
    too (clipped at the raster edge)."""
    col: int
    row: int
    cols: int
    rows: int
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @property
    def name(self):
        return f'r{self.row:07d}_c{self.col:07d}'

    @property
    def read_window(self):
        """(xoff, yoff, xsize, ysize) of the pixels read, halo included."""
        return (self.col - self.left, self.row - self.top, self.left + self.cols + self.right,
                self.top + self.rows + self.bottom)

    @property
    def own_window(self):
        """(xoff, yoff, xsize, ysize) of the own pixels inside the read window."""
        return self.left, self.top, self.cols, self.rows


def tile_size_for(size=DEFAULT_TILE_SIZE, multiple=1):
    """`size` rounded up to a multiple of `multiple` (e.g. the kriging neighbourhood block side, so
    that tiles cut the grid where the local run's blocks are cut)."""
    multiple = max(1, int(multiple))
    return max(multiple, math.ceil(int(size) / multiple) * multiple)


def tile_layout(grid, size=DEFAULT_TILE_SIZE, halo=0):
    """Tiles of `size` x `size` pixels covering `grid` row by row, with halos clipped at the edges."""
    tiles = []
    for row in range(0, grid.height, size):
        rows = min(size, grid.height - row)
        for col in range(0, grid.width, size):
            cols = min(size, grid.width - col)
            tiles.append(Tile(col, row, cols, rows, min(halo, col), min(halo, row),
                              min(halo, grid.width - col - cols), min(halo, grid.height - row - rows)))
    return tiles


def sub_grid(grid, xoff, yoff, xsize, ysize):
    """The Grid of a pixel window of a north-up grid."""
    x0, dx, rx, y0, ry, dy = grid.geotransform
    return Grid(xsize, ysize, (x0 + xoff * dx, dx, rx, y0 + yoff * dy, ry, dy), grid.crs_wkt)


@contextmanager
def window_rasters(paths, window):
    """In-memory VRTs of a pixel window (xoff, yoff, xsize, ysize) of each raster: GDAL reads only
    that window of the source, with its bands, nodata and band descriptions."""
    names = []
    try:
        for path in paths:
            names.append(f'/vsimem/rsgeochem-window-{uuid.uuid4().hex}.vrt')
            gdal.Translate(names[-1], str(path), format='VRT', srcWin=list(window))
        yield names
    finally:
        for name in names:
            gdal.Unlink(name)
