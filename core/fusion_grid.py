"""Geometry of a coarse-grid/fine-image fusion with GDAL: CRS, overlap and resolution checks, the
coarse grid resampled onto the image grid by cubic convolution, and fine rasters aggregated back
onto a coarser grid. Everything is a virtual (VRT) warp read block by block, so memory does not
grow with the raster size."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from .blockio import Grid, open_raster, raster_info, same_crs
from .errors import InputError

gdal.UseExceptions()

NODATA = float('nan')


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
    cubic_path = str(work_dir / 'coarse_cubic.vrt')
    xmin, ymin, xmax, ymax = image.extent
    gdal.Warp(cubic_path, coarse_path, format='VRT', dstSRS=image.crs_wkt or None,
              outputBounds=(xmin, ymin, xmax, ymax), width=image.width, height=image.height,
              resampleAlg='cubic', dstNodata=NODATA, outputType=gdal.GDT_Float32)
    return FusionGrids(image, coarse_path, coarse, cubic_path, ratio, reprojected)


def warp_to_grid(source_path, grid, out_path, resample):
    """VRT of `source_path` warped onto `grid` (same CRS assumed unless the grid says otherwise)."""
    xmin, ymin, xmax, ymax = grid.extent
    gdal.Warp(str(out_path), str(source_path), format='VRT', dstSRS=grid.crs_wkt or None,
              outputBounds=(xmin, ymin, xmax, ymax), width=grid.width, height=grid.height,
              resampleAlg=resample, dstNodata=NODATA, outputType=gdal.GDT_Float32)
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
