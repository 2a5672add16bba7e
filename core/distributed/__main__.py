"""Command line: run a block-wise step tile by tile on a Dask cluster, without QGIS.

    python -m rsgeochem.core.distributed --scheduler tcp://host:8786 applyinversionmodel \\
        --input /shared/scene_sr.tif --model /shared/re2o3.onnx --output /shared/re2o3.vrt

Without --scheduler the tiles run one after another in this process (no Dask needed). A .vrt
output keeps its tiles in "<output>.tiles"; a .tif output is one GeoTIFF (--cog: a COG). Run it
again after an interruption: complete tiles are kept. Ctrl-C cancels the cluster's tasks.
"""
import argparse
import sys

import numpy as np
from osgeo import ogr

from ..errors import CancelledError, InputError, MissingDependencyError
from ..geostat.kriging import fit_for_samples, prepare_samples
from ..geostat.variogram import VariogramModel
from ..imagery import indices
from ..imagery.calibration import (
    QUANTITY_LABELS,
    band_calibrations,
    band_description,
    linear_coefficients,
    resolve_geometry,
)
from ..imagery.sensor_metadata import parse_date, read_metadata
from ..imagery.sensors import SENSOR_IDS, load_sensors, parse_list, resolve_band_names
from ..raster.blockio import DEFAULT_MEMORY_MB, raster_info, same_crs
from . import steps
from .runner import ClusterRun
from .tiles import DEFAULT_TILE_SIZE


def calibration(args, run):
    info = raster_info(args.input, 'INPUT')
    sensor = load_sensors()[args.sensor]
    names = resolve_band_names(sensor, args.band_list, info.band_count, 'BAND_LIST')
    metadata = read_metadata(args.metadata, sensor.metadata, 'METADATA') if args.metadata else None
    calibrations = band_calibrations(sensor, names, metadata, parse_list(args.gains, 'GAINS'),
                                     parse_list(args.offsets, 'OFFSETS'), parse_list(args.esun, 'ESUN'))
    geometry = resolve_geometry(metadata, args.sun_elevation or None,
                                parse_date(args.date, 'DATE') if args.date else None)
    a, b = linear_coefficients(calibrations, args.quantity, geometry)
    steps.calibrate(run, args.input, args.output, a, b,
                    [band_description(band.name, args.quantity) for band in calibrations],
                    not args.keep_zero, args.memory)


def spectral_indices(args, run):
    info = raster_info(args.input, 'INPUT')
    sensor = indices.load_table()[0][args.sensor]
    lookup, _ = indices.band_lookup(sensor, info.band_count, info.descriptions, None, 'BAND_ORDER')
    chosen, _ = indices.select_indices(sensor, [name for name in args.indices.split(',') if name], lookup,
                                       info.band_count, 'INPUT', 'INDICES')
    valid = steps.indices(run, args.input, args.output, chosen, lookup, info.band_count, args.memory)
    for index, count in zip(chosen, valid):
        print(f'{index.name}: {count} valid pixels')


def inversion(args, run):
    bands = [int(band) for band in args.bands.split(',')] if args.bands else None
    result = steps.infer(run, args.input, args.model, args.output, bands, args.mask, args.memory)
    print(f'{result.predicted} pixels predicted, {result.nodata} nodata; bands {result.bands}')


def read_samples(path, field, crs_wkt):
    """(x, y, value) of the point features of the first layer of an OGR vector file."""
    dataset = ogr.Open(str(path))
    if dataset is None:
        raise InputError(f'cannot open the samples "{path}"; choose a vector file OGR reads.', 'INPUT')
    layer = dataset.GetLayer(0)
    reference = layer.GetSpatialRef()
    if reference is not None and crs_wkt and not same_crs(reference.ExportToWkt(), crs_wkt):
        raise InputError('the samples have another CRS than the reference raster; reproject them first.',
                         'INPUT')
    rows = [(feature.GetGeometryRef().GetX(), feature.GetGeometryRef().GetY(), feature.GetField(field))
            for feature in layer if feature.GetGeometryRef() is not None]
    x, y, z = (np.array([row[i] for row in rows], dtype=float) for i in range(3))
    return x, y, z


def kriging(args, run):
    grid = raster_info(args.reference, 'REFERENCE_RASTER').grid
    samples = prepare_samples(*read_samples(args.samples, args.field, grid.crs_wkt),
                              log_transform=args.log)
    if args.sill > 0 and args.range > 0:
        model = VariogramModel(args.variogram, args.nugget, args.sill, args.range)
    else:
        model = fit_for_samples(samples, args.variogram, n_neighbours=args.neighbours).model
    print(f'variogram {model.name}: nugget {model.nugget:.6g}, partial sill {model.psill:.6g}, '
          f'range {model.range:.6g}; {len(samples)} samples')
    summary = steps.krige(run, samples, model, grid, args.output, args.variance, (), args.neighbours,
                          args.radius, args.block, args.memory)
    print(f'{summary.mode}: {summary.nodata_pixels} of {summary.pixels} pixels without prediction')


def parser():
    main = argparse.ArgumentParser(prog='python -m rsgeochem.core.distributed',
                                   description=__doc__.split('\n\n')[0])
    main.add_argument('--scheduler', help='Dask scheduler address, e.g. tcp://host:8786 (empty: here)')
    main.add_argument('--tile-size', type=int, default=DEFAULT_TILE_SIZE, help='tile side in pixels')
    main.add_argument('--cog', action='store_true', help='write a .tif output as a Cloud Optimized GeoTIFF')
    main.add_argument('--upload', action='store_true',
                      help='send this package\'s core to the workers (Client.upload_file)')
    main.add_argument('--memory', type=int, default=DEFAULT_MEMORY_MB, help='block memory per task, MB')
    commands = main.add_subparsers(dest='step', required=True)

    step = commands.add_parser('radiometriccalibration', help='DN to TOA reflectance / radiance')
    step.add_argument('--input', required=True)
    step.add_argument('--output', required=True)
    step.add_argument('--sensor', choices=SENSOR_IDS, default=SENSOR_IDS[0])
    step.add_argument('--metadata')
    step.add_argument('--band-list', default='')
    for name in ('gains', 'offsets', 'esun', 'date'):
        step.add_argument(f'--{name}', default='')
    step.add_argument('--sun-elevation', type=float, default=0.0)
    step.add_argument('--quantity', choices=sorted(QUANTITY_LABELS), default='reflectance')
    step.add_argument('--keep-zero', action='store_true', help='DN 0 is data, not nodata')
    step.set_defaults(handler=calibration)

    step = commands.add_parser('spectralindices', help='band ratios and indices of a sensor preset')
    step.add_argument('--input', required=True)
    step.add_argument('--output', required=True)
    step.add_argument('--sensor', required=True, choices=['aster', 'sentinel2', 'landsat8', 'gf2'])
    step.add_argument('--indices', default='', help='comma-separated preset ids (empty: all)')
    step.set_defaults(handler=spectral_indices)

    step = commands.add_parser('applyinversionmodel', help='an ONNX regression model over a raster')
    step.add_argument('--input', required=True)
    step.add_argument('--model', required=True)
    step.add_argument('--output', required=True)
    step.add_argument('--bands', default='', help='comma-separated band numbers in the model\'s order')
    step.add_argument('--mask')
    step.set_defaults(handler=inversion)

    step = commands.add_parser('kriging', help='ordinary Kriging of point samples onto a raster grid')
    step.add_argument('--samples', required=True, help='point layer (first layer of an OGR file)')
    step.add_argument('--field', required=True)
    step.add_argument('--reference', required=True, help='raster whose grid the output takes')
    step.add_argument('--output', required=True)
    step.add_argument('--variance')
    step.add_argument('--log', action='store_true', help='krige the natural logarithm')
    step.add_argument('--variogram', default='spherical')
    for name in ('nugget', 'sill', 'range', 'radius'):
        step.add_argument(f'--{name}', type=float, default=0.0)
    step.add_argument('--neighbours', type=int, default=0)
    step.add_argument('--block', type=int, default=0, help='shared-neighbourhood block side (0: auto)')
    step.set_defaults(handler=kriging)
    return main


def show_progress(fraction):
    print(f'\rtiles done: {100 * fraction:5.1f} %', end='' if fraction < 1 else '\n', file=sys.stderr,
          flush=True)


def main(argv=None):
    args = parser().parse_args(argv)
    run = ClusterRun(args.scheduler, args.tile_size, args.cog, progress=show_progress, upload=args.upload)
    try:
        args.handler(args, run)
    except (InputError, MissingDependencyError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except (CancelledError, KeyboardInterrupt):
        print('\ncancelled: the complete tiles are kept; run the same command again to resume.',
              file=sys.stderr)
        return 130
    print(f'{run.stats["computed"]} tiles computed, {run.stats["skipped"]} reused; wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
