"""Geometry of a coarse-grid/fine-image fusion with GDAL: CRS, overlap and resolution checks, the
coarse grid resampled onto the image grid by cubic convolution, and fine rasters aggregated back
onto a coarser grid. Everything is a virtual (VRT) warp read block by block, so memory does not
grow with the raster size."""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from ..errors import InputError
from ..raster.blockio import Grid, RasterWriter, open_raster, raster_info, same_crs

gdal.UseExceptions()

NODATA = float('nan')
UNUSED_NODATA = float(np.finfo(np.float32).min)   # a warp's nodata that no warped value takes (warp_to_grid)
MIN_CELLS = 4  # coarse cells over the image below which there is nothing to regress
# intermediate rasters: uncompressed (written once, read once or twice, deleted)
TEMPORARY_GTIFF = ('TILED=YES', 'BIGTIFF=IF_SAFER')


@dataclass(frozen=True)
class FusionGrids:
    image: Grid            # the fine grid every output is written on
    coarse_path: str       # coarse grid in the image CRS (one band), a VRT
    coarse: Grid
    cubic_path: str        # coarse grid on the image grid by cubic convolution, a VRT
    ratio: float           # coarse / fine pixel size
    reprojected: bool      # the coarse grid had another CRS and was reprojected


def _check_north_up(grid, parameter):
    if grid.geotransform[2] != 0 or grid.geotransform[4] != 0:
        raise InputError('the raster is rotated (geotransform with rotation terms); warp it to a '
                         'north-up grid first (GDAL Warp).', parameter)


def _intersection(a, b):
    xmin, ymin = max(a[0], b[0]), max(a[1], b[1])
    xmax, ymax = min(a[2], b[2]), min(a[3], b[3])
    return (xmin, ymin, xmax, ymax) if xmin < xmax and ymin < ymax else None


def overlaps(grid, other):
    """True when the extents of two grids intersect (`other` brought into `grid`'s CRS)."""
    extent = other.extent
    if grid.crs_wkt and other.crs_wkt and not same_crs(grid.crs_wkt, other.crs_wkt):
        source, target = osr.SpatialReference(), osr.SpatialReference()
        source.ImportFromWkt(other.crs_wkt)
        target.ImportFromWkt(grid.crs_wkt)
        for reference in (source, target):
            reference.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        extent = osr.CoordinateTransformation(source, target).TransformBounds(*extent, 21)
    return _intersection(grid.extent, extent) is not None


def single_band_vrt(path, band, out_path, parameter):
    """A one-band VRT of band `band` (1-based) of `path`, with a NaN-safe nodata."""
    info = raster_info(path, parameter)
    if not 1 <= band <= info.band_count:
        raise InputError(f'band {band} does not exist ({info.band_count} bands); choose another band.',
                         parameter)
    gdal.Translate(str(out_path), open_raster(path, parameter), format='VRT', bandList=[band])
    return str(out_path), info


def prepare_grids(geo_path, geo_band, image_path, work_dir, geo_key, image_key, log=print):
    """Check the coarse grid against the image grid and build the VRTs the fusion reads.

    Raises InputError (naming `geo_key` or `image_key`) for a missing CRS on one side, no overlap,
    or a coarse grid finer than the image. A coarse grid in another CRS is reprojected (bilinear,
    at its own resolution) into the image CRS, which is logged.
    """
    work_dir = Path(work_dir)
    image = raster_info(image_path, image_key).grid
    _check_north_up(image, image_key)
    coarse_path, geo_info = single_band_vrt(geo_path, geo_band, work_dir / 'coarse_band.vrt', geo_key)
    coarse = geo_info.grid
    if bool(coarse.crs_wkt) != bool(image.crs_wkt):
        which, key = ('geochemical grid', geo_key) if not coarse.crs_wkt else ('image', image_key)
        raise InputError(f'the {which} has no CRS while the other raster has one; assign its CRS '
                         '(Assign projection) and run again.', key)
    reprojected = bool(coarse.crs_wkt) and not same_crs(coarse.crs_wkt, image.crs_wkt)
    if reprojected:
        target = str(work_dir / 'coarse_reprojected.vrt')
        gdal.Warp(target, coarse_path, format='VRT', dstSRS=image.crs_wkt, resampleAlg='bilinear',
                  dstNodata=NODATA, outputType=gdal.GDT_Float32)
        log(f'{geo_key}: the geochemical grid CRS differs from the image CRS; it was reprojected '
            'into the image CRS (bilinear, at its own resolution) before the fusion.')
        coarse_path = target
        coarse = raster_info(coarse_path, geo_key).grid
    _check_north_up(coarse, geo_key)
    if _intersection(coarse.extent, image.extent) is None:
        raise InputError('the geochemical grid does not overlap the image; check both layers cover '
                         'the same area (and their CRSs).', geo_key)
    fine_size = (image.pixel_width * image.pixel_height) ** 0.5
    coarse_size = (coarse.pixel_width * coarse.pixel_height) ** 0.5
    ratio = coarse_size / fine_size
    if ratio < 1.0:
        raise InputError(f'the geochemical grid ({coarse_size:.4g} map units per cell) is finer than '
                         f'the image ({fine_size:.4g}); this tool sharpens a coarse grid with a finer '
                         'image: aggregate the grid or choose a finer image.', geo_key)
    cells = overlapping_cells(coarse, image)
    if cells < MIN_CELLS:
        raise InputError(f'only {cells} cell(s) of the geochemical grid lie over the image: the '
                         f'regression needs the grid to vary over it (at least {MIN_CELLS} cells); choose a '
                         'finer grid or a larger image.', geo_key)
    cubic_path = warp_to_grid(coarse_path, image, work_dir / 'coarse_cubic.vrt', 'cubic')
    return FusionGrids(image, coarse_path, coarse, cubic_path, ratio, reprojected)


def overlapping_cells(coarse, image):
    """Number of cells of the coarse grid that overlap the image extent (same CRS, north-up)."""
    xmin, ymin, xmax, ymax = _intersection(coarse.extent, image.extent)
    col0, row0 = coarse.to_pixel(xmin, ymax)
    col1, row1 = coarse.to_pixel(xmax, ymin)
    columns = math.ceil(float(max(col0, col1)) - 1e-9) - math.floor(float(min(col0, col1)) + 1e-9)
    rows = math.ceil(float(max(row0, row1)) - 1e-9) - math.floor(float(min(row0, row1)) + 1e-9)
    return max(columns, 0) * max(rows, 0)


def warp_to_grid(source_path, grid, out_path, resample):
    """VRT of `source_path` warped onto `grid` (same CRS assumed unless the grid says otherwise),
    NaN where no source pixel contributes (its declared nodata)."""
    xmin, ymin, xmax, ymax = grid.extent
    nodata = dict(dstNodata=NODATA)
    if resample == 'cubic':
        # The destination starts as NaN (INIT_DEST) with a warp nodata no pixel holds: GDAL then finds
        # every destination pixel writable and runs its fast cubic kernel. With INIT_DEST=NO_DATA every
        # pixel starts invalid and GDAL takes its generic kernel at twice the CPU (4.4 vs 2.3 CPU s
        # for 64 Mpix, bench_fusion_large); values agree to float32 rounding (a 1-ulp difference at
        # ~4 pixels per million), NaN at the same pixels.
        nodata = dict(dstNodata=UNUSED_NODATA, warpOptions=['INIT_DEST=NaN'])
    gdal.Warp(str(out_path), str(source_path), format='VRT', dstSRS=grid.crs_wkt or None,
              outputBounds=(xmin, ymin, xmax, ymax), width=grid.width, height=grid.height,
              resampleAlg=resample, outputType=gdal.GDT_Float32, **nodata)
    if resample == 'cubic':
        warped = gdal.Open(str(out_path), gdal.GA_Update)
        warped.GetRasterBand(1).SetNoDataValue(NODATA)   # declared only: the warp keeps its own
        warped = None  # noqa: F841 - closing writes the VRT
    return str(out_path)


def covered_rows_and_columns(coarse, image):
    """Masks (rows, columns) of coarse cells lying wholly inside the image extent: aggregates of
    the fine grid are complete only there. Both grids share the CRS and are north-up."""
    x0, dx, _, y0, _, dy = coarse.geotransform
    xmin, ymin, xmax, ymax = image.extent
    tolerance = 1e-6 * max(abs(dx), abs(dy))
    left = x0 + dx * np.arange(coarse.width)
    right = left + dx
    top = y0 + dy * np.arange(coarse.height)
    bottom = top + dy
    columns = (np.minimum(left, right) >= xmin - tolerance) & (np.maximum(left, right) <= xmax + tolerance)
    rows = (np.minimum(top, bottom) >= ymin - tolerance) & (np.maximum(top, bottom) <= ymax + tolerance)
    return rows, columns


def cell_factors(coarse, image, tolerance=1e-6):
    """(rows, columns, row offset, column offset) when every coarse cell is a whole block of
    rows × columns fine pixels inside the image (same CRS, integer ratio, edges on fine pixel
    edges): fine pixel (i, j) lies in coarse cell ((i + row offset) // rows, (j + column offset)
    // columns). None otherwise, also when a cell overhangs the image: GDAL's 'average' warp
    then averages edge pixels repeated (clamped source window), which CellMeans does not mimic."""
    if coarse.crs_wkt != image.crs_wkt and not same_crs(coarse.crs_wkt, image.crs_wkt):
        return None
    factors = []
    for origin, size, cells, fine_origin, fine_size, pixels in (
            (coarse.geotransform[3], coarse.geotransform[5], coarse.height,
             image.geotransform[3], image.geotransform[5], image.height),
            (coarse.geotransform[0], coarse.geotransform[1], coarse.width,
             image.geotransform[0], image.geotransform[1], image.width)):
        ratio, offset = size / fine_size, (fine_origin - origin) / fine_size
        if ratio < 1 - tolerance or abs(ratio - round(ratio)) > tolerance \
                or abs(offset - round(offset)) > tolerance:
            return None
        ratio, offset = int(round(ratio)), int(round(offset))
        if offset > 0 or cells * ratio - offset > pixels:
            return None
        factors.append((ratio, offset))
    (rows, row_offset), (columns, column_offset) = factors
    return rows, columns, row_offset, column_offset


def cell_sums(values, row, col, factors, coarse):
    """Partial sums for cell means over a tile of a fine raster, for engines that reduce tiles in
    any order (e.g. Dask): `values` (rows, cols) are fine pixels from (row, col), `factors` from
    cell_factors. Returns (first cell row, first cell column, sums, counts), float64 arrays over
    the cells of `coarse` the tile touches, with the finite values only; a cell cut by tiles gets
    the sum of their parts. Summed over all tiles, sums / counts are CellMeans' means (float64
    sums of float32 values: exact for a cell's pixels of similar magnitude, so the order of the
    reduction does not matter in practice)."""
    rows, columns, row_offset, column_offset = factors
    cell_rows = (np.arange(row, row + values.shape[0]) + row_offset) // rows
    cell_cols = (np.arange(col, col + values.shape[1]) + column_offset) // columns
    keep_rows = np.flatnonzero((cell_rows >= 0) & (cell_rows < coarse.height))
    keep_cols = np.flatnonzero((cell_cols >= 0) & (cell_cols < coarse.width))
    if not len(keep_rows) or not len(keep_cols):
        return 0, 0, np.zeros((0, 0)), np.zeros((0, 0))
    inside = (slice(keep_rows[0], keep_rows[-1] + 1), slice(keep_cols[0], keep_cols[-1] + 1))
    block, cell_rows, cell_cols = values[inside], cell_rows[inside[0]], cell_cols[inside[1]]
    row_starts = np.flatnonzero(np.diff(cell_rows, prepend=-1))
    col_starts = np.flatnonzero(np.diff(cell_cols, prepend=-1))
    valid = np.isfinite(block)

    def reduce(array):
        return np.add.reduceat(np.add.reduceat(array, row_starts, axis=0, dtype=np.float64), col_starts,
                               axis=1)
    return int(cell_rows[0]), int(cell_cols[0]), reduce(np.where(valid, block, 0)), reduce(valid)


class CellMeans:
    """Mean of the finite values of a fine raster over each cell of an aligned coarser grid
    inside it (cell_factors), fed block by block in row order and written to a coarse GeoTIFF as its rows
    complete, so memory holds only the coarse rows in progress. It equals a GDAL 'average' warp
    onto the coarse grid (cells without a finite value are nodata) without a second read of the
    fine raster, which is why it is hand-written (summed in float64, stored as float32)."""

    def __init__(self, coarse, image, path):
        self.factors = cell_factors(coarse, image)
        rows, columns, row_offset, column_offset = self.factors
        self.coarse, self.image, self.path = coarse, image, str(path)
        fine = np.arange(image.width) + column_offset
        inside = (fine >= 0) & (fine < coarse.width * columns)
        self.columns = slice(int(np.argmax(inside)), int(len(inside) - np.argmax(inside[::-1])))
        cells = fine[self.columns] // columns
        self.column_starts = np.flatnonzero(np.diff(cells, prepend=-1))
        self.cells = slice(int(cells[0]), int(cells[-1]) + 1) if inside.any() else slice(0, 0)
        self.first = 0                                  # first coarse row not yet written
        self.sums = np.zeros((0, coarse.width))
        self.counts = np.zeros((0, coarse.width))
        self.writer = None

    def __enter__(self):
        self.writer = RasterWriter(self.path, self.coarse, 1, options=TEMPORARY_GTIFF)
        self.writer.__enter__()
        return self

    def add(self, row, values):
        """Fine rows row..row + len(values) (full width), after every earlier row."""
        rows, _, row_offset, _ = self.factors
        cell_rows = (np.arange(row, row + len(values)) + row_offset) // rows
        keep = np.flatnonzero((cell_rows >= 0) & (cell_rows < self.coarse.height))
        if len(keep) and self.cells.stop > self.cells.start:
            cell_rows = cell_rows[keep[0]:keep[-1] + 1]
            block = values[keep[0]:keep[-1] + 1, self.columns]
            starts = np.flatnonzero(np.diff(cell_rows, prepend=-1))
            valid = np.isfinite(block)
            if valid.all():
                counts = np.multiply.outer(np.diff(starts, append=len(cell_rows)),
                                           np.diff(self.column_starts, append=block.shape[1]))
            else:
                block = np.where(valid, block, 0)
                counts = self._reduce(valid, starts)
            sums = self._reduce(block, starts)
            needed = int(cell_rows[-1]) + 1 - self.first
            if needed > len(self.sums):
                grow = np.zeros((needed - len(self.sums), self.coarse.width))
                self.sums = np.concatenate([self.sums, grow])
                self.counts = np.concatenate([self.counts, grow])
            index = cell_rows[starts] - self.first
            self.sums[index, self.cells] += sums
            self.counts[index, self.cells] += counts
        done = row + len(values) >= self.image.height
        self._flush(self.coarse.height if done else (row + len(values) + row_offset) // rows)

    def _reduce(self, block, row_starts):
        """Float64 sums of a block over each cell's rows, then over its columns."""
        return np.add.reduceat(np.add.reduceat(block, row_starts, axis=0, dtype=np.float64),
                               self.column_starts, axis=1)

    def _flush(self, stop):
        """Write coarse rows first..stop (exclusive): no later fine row falls in them."""
        stop = min(max(stop, self.first), self.coarse.height)
        count = stop - self.first
        if count <= 0:
            return
        sums = np.zeros((count, self.coarse.width))
        counts = np.zeros((count, self.coarse.width))
        held = min(count, len(self.sums))
        sums[:held], counts[:held] = self.sums[:held], self.counts[:held]
        with np.errstate(invalid='ignore', divide='ignore'):
            means = np.where(counts > 0, sums / counts, np.nan)
        self.writer.write(self.first, means.astype(np.float32))
        self.sums, self.counts = self.sums[held:], self.counts[held:]
        self.first = stop

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self._flush(self.coarse.height)
        return self.writer.__exit__(exc_type, exc, traceback)
