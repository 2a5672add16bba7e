"""Glue for optional masks: a keep/mask raster (MASK parameter, from `surfacemask`) aligned with an
algorithm's grid, and exclusion polygons brought into a raster's CRS.

Policy for a MASK raster on another grid: on the reference grid's pixel lattice (same CRS, pixel
size and alignment, e.g. the image's mask for maps kriged over a window of the image), its matching
window is read as it is (a temporary VRT); otherwise it is resampled nearest-neighbour onto the
reference grid into a temporary VRT (gdal.Warp, nothing copied) and the log says so. Pixels outside
the mask count as masked. A mask without a CRS or with more than one band is refused.
"""
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsWkbTypes,
)

from ...core.errors import InputError
from ...core.raster.blockio import RasterReader, raster_info
from ...core.raster.lattice import covers, lattice_offset
from . import compat
from .base import raster_path

MASK_HELP = ('Optional keep/mask raster (e.g. the output of "Surface mask"): pixels with value 0 or '
             'nodata are left out, any other value is kept. A mask on the input\'s pixel lattice but over '
             'another extent (e.g. the image\'s mask for maps kriged over the samples\' extent) is read at '
             'the input\'s pixels as it is; a mask on another grid or CRS is resampled nearest-neighbour '
             'onto the input grid (a temporary VRT) and the log says so. Pixels outside the mask are '
             'masked.')


def add_mask_parameter(algorithm, key='MASK'):
    algorithm.add(QgsProcessingParameterRasterLayer(key, algorithm.tr('Mask raster (1 keep, 0 masked)'),
                                                    optional=True), MASK_HELP)


def mask_reader(algorithm, parameters, key, context, reference_grid, feedback):
    """RasterReader of the mask on `reference_grid` (a core.raster.blockio.Grid), or None when not set."""
    if algorithm.parameterAsRasterLayer(parameters, key, context) is None:
        return None
    path = raster_path(algorithm, parameters, key, context)
    info = raster_info(path, key)
    if info.band_count != 1:
        raise InputError(f'the mask has {info.band_count} bands; choose a one-band keep/mask raster '
                         '(1 keep, 0 masked), e.g. from "Surface mask".', key)
    if info.grid.same_as(reference_grid):
        return RasterReader(path, key)
    offset = lattice_offset(info.grid, reference_grid)
    if offset is not None:
        return lattice_window(path, key, info.grid, offset, reference_grid, feedback)
    if not info.grid.crs_wkt or not reference_grid.crs_wkt:
        raise InputError('the mask is on another grid and it or the input has no CRS, so it cannot be '
                         'resampled; assign the CRS, or align the mask with "Align rasters" / gdalwarp.', key)
    aligned = QgsProcessingUtils.generateTempFilename(f'{key.lower()}_aligned.vrt')
    gdal.Warp(aligned, path, format='VRT', dstSRS=reference_grid.crs_wkt,
              outputBounds=reference_grid.extent, width=reference_grid.width,
              height=reference_grid.height, resampleAlg='near')
    feedback.pushWarning(
        f'{key}: the mask is on another grid/CRS than the input ({info.grid.width}x{info.grid.height} px); '
        f'it was resampled nearest-neighbour onto the input grid ({reference_grid.width}x'
        f'{reference_grid.height} px) into the temporary VRT {aligned}. Pixels outside the mask count as '
        'masked. To avoid resampling, make the mask from the same raster or align it with '
        '"Align rasters" / gdalwarp.')
    return RasterReader(aligned, key)


def lattice_window(path, key, grid, offset, reference_grid, feedback):
    """RasterReader of the window of a mask on the reference grid's lattice (e.g. the image's mask
    for maps kriged over the samples' extent): its pixels as they are, no resampling, in a temporary
    VRT; the part of the window beyond the mask reads as 0 or nodata, i.e. masked."""
    col, row = offset
    if (col >= grid.width or row >= grid.height or col + reference_grid.width <= 0
            or row + reference_grid.height <= 0):
        raise InputError(f'the mask ({grid.width}x{grid.height} px) does not overlap the input '
                         f'({reference_grid.width}x{reference_grid.height} px, extent '
                         f'{reference_grid.extent}); choose the mask made for this area, or none.', key)
    window = QgsProcessingUtils.generateTempFilename(f'{key.lower()}_window.vrt')
    gdal.Translate(window, path, format='VRT', srcWin=[col, row, reference_grid.width, reference_grid.height])
    if not covers((-col, -row), grid, reference_grid):
        feedback.pushWarning(f'{key}: the mask covers only part of the input; pixels outside it count as '
                             'masked.')
    return RasterReader(window, key)


def polygon_wkts(source, crs_wkt, context, feedback, key):
    """WKT of every polygon of `source` (a feature source) in the CRS `crs_wkt`; reprojects and logs
    when the layer's CRS differs, refuses a non-polygon layer or one without CRS."""
    if QgsWkbTypes.geometryType(source.wkbType()) != compat.POLYGON_GEOMETRY:
        raise InputError(f'the layer must hold polygons, not {QgsWkbTypes.displayString(source.wkbType())}.',
                         key)
    target = QgsCoordinateReferenceSystem.fromWkt(crs_wkt)
    transform = None
    if source.sourceCrs() != target:
        if not source.sourceCrs().isValid() or not target.isValid():
            raise InputError('the polygons or the raster have no CRS, so the polygons cannot be placed on '
                             'the raster; assign the CRS (Layer properties or "Assign projection").', key)
        transform = QgsCoordinateTransform(source.sourceCrs(), target, context.transformContext())
        feedback.pushInfo(f'{key}: polygons reprojected from {source.sourceCrs().authid()} to the raster '
                          f'CRS {target.authid() or target.description()}.')
    wkts = []
    for feature in source.getFeatures():
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            continue
        if transform is not None:
            geometry.transform(transform)
        wkts.append(geometry.asWkt())
    return wkts
