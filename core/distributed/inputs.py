"""What the command line reads before a tiled run, as the algorithms' glue does in QGIS: point
samples from an OGR file (with their external-drift values), the calibration coefficients of a
sensor, the variogram (given or fitted)."""
import numpy as np
from osgeo import ogr, osr

from ..errors import InputError
from ..geostat.kriging import fit_for_samples, prepare_samples
from ..geostat.kriging_grid import DriftRasters, count_inside
from ..geostat.variogram import VariogramModel
from ..imagery.calibration import band_calibrations, band_description, linear_coefficients, resolve_geometry
from ..imagery.sensor_metadata import parse_date, read_metadata
from ..imagery.sensors import load_sensors, parse_list, resolve_band_names
from ..raster.blockio import raster_info, same_crs

SAMPLES, DRIFT_RASTERS = 'INPUT', 'DRIFT_RASTERS'


def read_samples(path, field, crs_wkt):
    """(x, y, value) of the point features of the first layer of an OGR vector file."""
    dataset = ogr.Open(str(path))
    if dataset is None:
        raise InputError(f'cannot open the samples "{path}"; choose a vector file OGR reads.', SAMPLES)
    layer = dataset.GetLayer(0)
    if layer.GetLayerDefn().GetFieldIndex(field) < 0:
        raise InputError(f'the samples have no field "{field}"; choose one of their numeric fields.', 'FIELD')
    reference = layer.GetSpatialRef()
    if reference is not None and crs_wkt and not same_crs(reference.ExportToWkt(), crs_wkt):
        raise InputError('the samples have another CRS than the reference raster; reproject them first.',
                         SAMPLES)
    rows = [(feature.GetGeometryRef().GetX(), feature.GetGeometryRef().GetY(), feature.GetField(field))
            for feature in layer if feature.GetGeometryRef() is not None]
    x, y, z = (np.array([row[i] for row in rows], dtype=float) for i in range(3))  # None: NaN
    return x, y, z


def kriging_inputs(samples_path, field, reference_path=None, drift_paths=(), log_transform=False):
    """(output Grid, core.geostat.kriging.Samples with their drift values) for Kriging onto the grid
    of `reference_path` (default: the first drift raster) with external drift rasters on that grid
    (universal Kriging; none: ordinary Kriging)."""
    if reference_path:
        grid = raster_info(reference_path, 'REFERENCE_RASTER').grid
    elif drift_paths:
        grid = raster_info(drift_paths[0], DRIFT_RASTERS).grid
    else:
        raise InputError('give a reference raster or a drift raster: the output takes its grid.',
                         'REFERENCE_RASTER')
    x, y, z = read_samples(samples_path, field, grid.crs_wkt)
    if count_inside(grid, x, y) == 0:
        raise InputError(f'none of the {len(x)} samples lies inside the output grid {grid.extent}.', SAMPLES)
    drift = DriftRasters(drift_paths, grid, DRIFT_RASTERS).at_points(x, y) if drift_paths else None
    return grid, prepare_samples(x, y, z, drift, log_transform)


def variogram(samples, model_name, nugget=0.0, sill=0.0, range_=0.0, n_neighbours=0, radius=0.0,
              error_variance=0.0):
    """The given variogram (sill and range > 0) or the one fitted to the samples (on the residuals of
    the drift when there is one; 'auto' tries every model)."""
    if sill > 0 and range_ > 0:
        return VariogramModel(model_name, nugget, sill, range_, error_variance=error_variance)
    return fit_for_samples(samples, model_name, n_neighbours=n_neighbours, radius=radius,
                           error_variance=error_variance).model


def calibration_coefficients(input_path, sensor_id, band_list='', metadata_path=None, gains='', offsets='',
                             esun='', sun_elevation=0.0, date='', quantity='reflectance'):
    """(a, b, band descriptions) of out = a * DN + b for the sensor's bands, as the
    radiometriccalibration algorithm resolves them."""
    info = raster_info(input_path, 'INPUT')
    sensor = load_sensors()[sensor_id]
    names = resolve_band_names(sensor, band_list, info.band_count, 'BAND_LIST')
    metadata = read_metadata(metadata_path, sensor.metadata, 'METADATA') if metadata_path else None
    calibrations = band_calibrations(sensor, names, metadata, parse_list(gains, 'GAINS'),
                                     parse_list(offsets, 'OFFSETS'), parse_list(esun, 'ESUN'))
    geometry = resolve_geometry(metadata, sun_elevation or None, parse_date(date, 'DATE') if date else None)
    a, b = linear_coefficients(calibrations, quantity, geometry)
    return a, b, [band_description(band.name, quantity) for band in calibrations]


def read_polygons(path, crs_wkt, parameter='EXCLUDE_POLYGONS'):
    """WKT of the polygons of the first layer of an OGR vector file, in the CRS `crs_wkt`."""
    dataset = ogr.Open(str(path))
    if dataset is None:
        raise InputError(f'cannot open the polygons "{path}"; choose a vector file OGR reads.', parameter)
    layer = dataset.GetLayer(0)
    transform = None
    source = layer.GetSpatialRef()
    if source is not None and crs_wkt and not same_crs(source.ExportToWkt(), crs_wkt):
        target = osr.SpatialReference()
        target.ImportFromWkt(crs_wkt)
        for reference in (source, target):
            reference.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # x = easting / longitude
        transform = osr.CoordinateTransformation(source, target)
    wkts = []
    for feature in layer:
        geometry = feature.GetGeometryRef()
        if geometry is None:
            continue
        geometry = geometry.Clone()
        if transform is not None:
            geometry.Transform(transform)
        wkts.append(geometry.ExportToWkt())
    return wkts
