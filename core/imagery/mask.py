"""Keep/mask rasters: 1 keep, 0 masked, nodata where the image has no data.

Vegetation (NDVI above a threshold) and open water (NDWI above a threshold) hide the rock and soil
signal the inversion needs, and buildings or mine ponds give false anomalies (limitations named by
Cheng et al. 2023): the mask removes them before fitting or mapping.
"""
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import InputError
from ..raster.blockio import DEFAULT_MEMORY_MB, RasterWriter, raster_info, read_blocks
from .calibration import exact_read_type
from .indices import normalized_difference

KEEP = 1
MASKED = 0
MASK_NODATA = 255


@dataclass
class MaskCounts:
    """Pixel counts over the valid pixels of the image (a pixel may fall in several classes)."""
    valid: int = 0
    vegetation: int = 0
    water: int = 0
    polygons: int = 0
    masked: int = 0

    def add(self, other):
        for name in ('valid', 'vegetation', 'water', 'polygons', 'masked'):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def fraction(self, name):
        return getattr(self, name) / self.valid if self.valid else float('nan')


def surface_mask(valid, red=None, nir=None, green=None, ndvi_threshold=None, ndwi_threshold=None,
                 inside_polygons=None, nir_water_threshold=None):
    """(uint8 mask, MaskCounts) of one block.

    `valid` is a bool array of pixels with data; red/nir/green masked reflectance arrays (any
    consistent unit). Vegetation where NDVI = (NIR-red)/(NIR+red) > ndvi_threshold (Rouse et al.
    1974); water where NDWI = (green-NIR)/(green+NIR) > ndwi_threshold (McFeeters 1996) or where
    NIR < nir_water_threshold (same unit as `nir`, e.g. reflectance 0-1: water absorbs the near
    infrared, so even turbid water whose green does not exceed its NIR stays dark there); pixels
    inside polygons are masked too. A threshold of None switches that rule off; an undefined
    index (zero denominator) does not mask the pixel.
    """
    counts = MaskCounts(valid=int(valid.sum()))

    def wide(band):  # a band a rule uses, in float64 (blocks may be read in a narrower exact type)
        return band.astype(np.float64, copy=False)
    rules = (('vegetation', ndvi_threshold,
              lambda: normalized_difference(wide(nir), wide(red)) > ndvi_threshold),
             ('water', ndwi_threshold,
              lambda: normalized_difference(wide(green), wide(nir)) > ndwi_threshold),
             ('water', nir_water_threshold, lambda: wide(nir) < nir_water_threshold))
    hits = {'vegetation': np.zeros(valid.shape, dtype=bool), 'water': np.zeros(valid.shape, dtype=bool)}
    for name, threshold, test in rules:
        if threshold is not None:
            hits[name] |= valid & np.ma.filled(test(), False)
    for name, hit in hits.items():
        setattr(counts, name, int(hit.sum()))
    masked = hits['vegetation'] | hits['water']
    if inside_polygons is not None:
        hit = valid & inside_polygons
        counts.polygons = int(hit.sum())
        masked |= hit
    counts.masked = int(masked.sum())
    result = np.full(valid.shape, MASK_NODATA, dtype=np.uint8)
    result[valid] = KEEP
    result[masked] = MASKED
    return result, counts


def check_some_valid(counts, parameter=None):
    if not counts.valid:
        raise InputError('the input bands are nodata everywhere; check the nodata value and the band '
                         'numbers.', parameter)


def write_surface_mask(path, output, bands, thresholds, burner=None, memory_mb=DEFAULT_MEMORY_MB,
                       progress=None, cancel=None, parameter=None, require_valid=True):
    """Write the keep/mask raster of the image at `path` (Byte GeoTIFF), block by block; returns the
    MaskCounts. `bands` maps 'red', 'nir', 'green' to 1-based band numbers (0: unused),
    `thresholds` are surface_mask's, `burner` a PolygonBurner or None. Without a valid pixel (and
    `require_valid`) nothing is written and InputError names `parameter`."""
    info = raster_info(path, parameter)
    grid = info.grid
    used = sorted({number for number in bands.values() if number}) or [1]
    total = MaskCounts()
    with RasterWriter(output, grid, 1, nodata=MASK_NODATA, data_type=gdal.GDT_Byte,
                      descriptions=['keep (1) / masked (0)']) as writer:
        for window, block in read_blocks(path, used, memory_mb, extra_bytes_per_pixel=64,
                                         dtype=exact_read_type(info), cancel=cancel, progress=progress,
                                         parameter=parameter):
            by_band = dict(zip(used, block))
            arrays = {name: by_band.get(number) for name, number in bands.items()}
            inside = burner.burn(grid, window) if burner else None
            mask, counts = surface_mask(~np.ma.getmaskarray(block).any(axis=0), inside_polygons=inside,
                                        **arrays, **thresholds)
            total.add(counts)
            writer.write(window.row, mask)
        if require_valid:
            check_some_valid(total, parameter)
    return total


def read_mask_block(reader, window):
    """Bool keep array (window.read_rows, width) of a mask raster read with `reader` (a
    core.raster.blockio.RasterReader on the caller's grid): True where the mask is non-zero and not
    nodata, so nodata and 0 both exclude the pixel."""
    block = reader.read(window, bands=[1])
    return np.ma.filled(block[0] != 0, False)


class PolygonBurner:
    """Polygons (WKT in the grid's CRS) rasterised block by block with GDAL's rasteriser, so the
    whole-raster burn never sits in memory."""

    def __init__(self, wkts, crs_wkt, all_touched=True):
        self.arguments = (tuple(wkts), crs_wkt, all_touched)
        self.datasource = ogr.GetDriverByName('Memory').CreateDataSource('polygons')
        srs = osr.SpatialReference()
        if crs_wkt:
            srs.ImportFromWkt(crs_wkt)
        self.layer = self.datasource.CreateLayer('polygons', srs, ogr.wkbUnknown)
        for wkt in wkts:
            feature = ogr.Feature(self.layer.GetLayerDefn())
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
            self.layer.CreateFeature(feature)
        self.options = ['ALL_TOUCHED=TRUE'] if all_touched else []

    def __reduce__(self):  # pickled (e.g. to Dask workers) as its polygons, rebuilt there
        return type(self), self.arguments

    def burn(self, grid, window):
        """Bool array (window.read_rows, grid.width), True inside a polygon."""
        x0, dx, rx, y0, ry, dy = grid.geotransform
        target = gdal.GetDriverByName('MEM').Create('', grid.width, window.read_rows, 1, gdal.GDT_Byte)
        target.SetGeoTransform((x0 + rx * window.read_row, dx, rx, y0 + dy * window.read_row, ry, dy))
        if grid.crs_wkt:
            target.SetProjection(grid.crs_wkt)
        gdal.RasterizeLayer(target, [1], self.layer, burn_values=[1], options=self.options)
        return target.GetRasterBand(1).ReadAsArray().astype(bool)
