"""Command line: run a block-wise step, or the rare-earth workflow's block-wise steps, tile by tile
on a Dask cluster, without QGIS.

    python -m rsgeochem.core.distributed --scheduler tcp://host:8786 applyinversionmodel \\
        --input /shared/scene_sr.tif --model /shared/re2o3.onnx --output /shared/re2o3.vrt
    python -m rsgeochem.core.distributed --scheduler tcp://host:8786 laplacianfusion \\
        --grid /shared/cu_grid.tif --image /shared/scene_sr.tif --output /shared/cu_fused.vrt
    python -m rsgeochem.core.distributed --scheduler tcp://host:8786 workflow --image /shared/dn.tif \\
        --gains 0.1322,0.155,0.1477,0.1613 --esun 1944.98,1854.42,1542.87,1080.97 \\
        --samples /shared/samples.gpkg --field RE2O3 --model /shared/re2o3.onnx --output-dir /shared/run

Without --scheduler the tiles run one after another in this process (no Dask needed). A .vrt
output keeps its tiles in "<output>.tiles"; a .tif output is one GeoTIFF (--cog: a COG). Run it
again after an interruption: complete tiles are kept. Ctrl-C cancels the cluster's tasks.
"""
import argparse
import sys
from dataclasses import fields

from ..errors import CancelledError, InputError, MissingDependencyError
from ..fusion.model import ESTIMATORS
from ..fusion.pipeline import MODES, FusionSettings
from ..imagery.calibration import QUANTITY_LABELS
from ..imagery.sensors import SENSOR_IDS, parse_list
from ..raster.blockio import DEFAULT_MEMORY_MB
from . import fusion as distributed_fusion
from . import steps
from . import workflow as workflow_module  # the name `workflow` is the step's handler
from .inputs import calibration_coefficients, kriging_inputs, variogram
from .runner import ClusterRun
from .tiles import DEFAULT_TILE_SIZE
from .workflow import RareEarthSettings, preset_indices, rare_earth_workflow

BLOCK_HELP = ('0 or 1: every pixel its own neighbourhood (exact); 2-64: square blocks of this side share '
              'the neighbourhood of their centre (faster, approximate near the corners)')


def calibration(args, run):
    a, b, descriptions = calibration_coefficients(args.input, args.sensor, args.band_list, args.metadata,
                                                  args.gains, args.offsets, args.esun, args.sun_elevation,
                                                  args.date, args.quantity)
    steps.calibrate(run, args.input, args.output, a, b, descriptions, not args.keep_zero, args.memory)


def spectral_indices(args, run):
    chosen = parse_list(args.indices, 'INDICES', str)
    valid = preset_indices(run, args.input, args.output, args.sensor, chosen, args.memory)
    for name, count in valid.items():
        print(f'{name}: {count} valid pixels')


def inversion(args, run):
    bands = parse_list(args.bands, 'BANDS', int, 'band number')
    result = steps.infer(run, args.input, args.model, args.output, bands or None, args.mask, args.memory)
    print(f'{result.predicted} pixels predicted, {result.nodata} nodata; bands {result.bands}')


def kriging(args, run):
    drift_paths = args.drift or []
    grid, samples = kriging_inputs(args.samples, args.field, args.reference, drift_paths, args.log)
    model = variogram(samples, args.variogram, args.nugget, args.sill, args.range, args.neighbours,
                      args.radius)
    kind = f'universal, {samples.drift.shape[1]} drift variables' if drift_paths else 'ordinary'
    print(f'variogram {model.name}: nugget {model.nugget:.6g}, partial sill {model.psill:.6g}, '
          f'range {model.range:.6g}; {len(samples)} samples ({kind} Kriging)')
    summary = steps.krige(run, samples, model, grid, args.output, args.variance, drift_paths, args.neighbours,
                          args.radius, args.block, args.memory)
    print(f'{summary.mode}: {summary.nodata_pixels} of {summary.pixels} pixels without prediction')


def laplacian_fusion(args, run):
    cluster_bands = parse_list(args.cluster_bands, 'CLUSTER_BANDS', int, 'band number')
    settings = FusionSettings(mode=args.mode, clusters=args.clusters, estimator=args.regression,
                              levels=args.levels, residual_iterations=args.residual_iterations,
                              sample_size=args.sample_size, min_cluster_pixels=args.min_cluster_pixels,
                              seed=args.seed, memory_mb=args.memory,
                              cluster_bands=tuple(cluster_bands))
    levels, model, warnings = distributed_fusion.fuse(
        run, args.grid, args.grid_band, args.image, parse_list(args.bands, 'BANDS', int, 'band number'),
        args.output, args.clusters_output, args.mask, settings)
    print(f'{levels} pyramid level(s); regression R² {model.global_fit.r2:.3f} ({settings.estimator})')
    for warning in warnings:
        print(f'warning: {warning}', file=sys.stderr)


def workflow(args, run):
    given = {field.name: getattr(args, field.name) for field in fields(RareEarthSettings)
             if field.name not in ('indices', 'memory_mb')}
    settings = RareEarthSettings(**given, indices=tuple(parse_list(args.indices, 'INDICES', str)),
                                 memory_mb=args.memory)
    rare_earth_workflow(run, settings)


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

    step = commands.add_parser('kriging', help='ordinary / universal (external drift) Kriging of point '
                               'samples onto a raster grid')
    step.add_argument('--samples', required=True, help='point layer (first layer of an OGR file)')
    step.add_argument('--field', required=True)
    step.add_argument('--reference', help='raster whose grid the output takes (default: the first drift '
                      'raster)')
    step.add_argument('--drift', action='append', metavar='RASTER',
                      help='external drift raster on the output grid, every band one drift variable '
                      '(universal Kriging); repeat for several')
    step.add_argument('--output', required=True)
    step.add_argument('--variance')
    step.add_argument('--log', action='store_true', help='krige the natural logarithm')
    step.add_argument('--variogram', default='spherical')
    for name in ('nugget', 'sill', 'range', 'radius'):
        step.add_argument(f'--{name}', type=float, default=0.0)
    step.add_argument('--neighbours', type=int, default=0)
    step.add_argument('--block', type=int, default=0, help=BLOCK_HELP)
    step.set_defaults(handler=kriging)
    add_fusion(commands)
    add_workflow(commands)
    return main


def add_fusion(commands):
    defaults = FusionSettings()
    step = commands.add_parser('laplacianfusion', help='Laplacian-pyramid regression fusion of a coarse '
                               'geochemical grid with a fine image')
    step.add_argument('--grid', required=True, help='coarse geochemical grid (raster)')
    step.add_argument('--grid-band', type=int, default=1)
    step.add_argument('--image', required=True, help='fine image; its grid is the output grid')
    step.add_argument('--bands', default='', help='comma-separated regression bands (empty: all)')
    step.add_argument('--output', required=True)
    step.add_argument('--clusters-output', help='raster of the K-means cluster of each pixel')
    step.add_argument('--mask', help='keep (1) / mask (0) raster on the image grid')
    step.add_argument('--mode', choices=MODES, default=defaults.mode)
    step.add_argument('--regression', choices=ESTIMATORS, default=defaults.estimator)
    step.add_argument('--cluster-bands', default='', help='bands K-means uses (empty: the regression\'s)')
    for name in ('clusters', 'levels', 'residual_iterations', 'sample_size', 'min_cluster_pixels', 'seed'):
        step.add_argument(f'--{name.replace("_", "-")}', type=int, default=getattr(defaults, name))
    step.set_defaults(handler=laplacian_fusion)


def add_workflow(commands):
    defaults = {field.name: field.default for field in fields(RareEarthSettings)}
    step = commands.add_parser('workflow', help='the rare-earth inversion workflow\'s block-wise steps',
                               description=workflow_module.__doc__)
    step.add_argument('--image', required=True, help='GF-2 PMS image in DN (bands 1-4)')
    step.add_argument('--sensor', choices=SENSOR_IDS[:2], default=defaults['sensor'])
    step.add_argument('--metadata', help='the scene\'s .xml (date and sun angle)')
    step.add_argument('--gains', required=True, help='radiance gains of bands 1-4, comma-separated')
    step.add_argument('--offsets', default=defaults['offsets'], help='radiance offsets (empty: 0)')
    step.add_argument('--esun', required=True, help='solar irradiance of bands 1-4, comma-separated')
    step.add_argument('--samples', required=True, help='point layer in the image\'s CRS')
    step.add_argument('--field', required=True, help='numeric field of the content')
    step.add_argument('--model', required=True, help='trained ONNX inversion model (Train inversion model)')
    step.add_argument('--output-dir', required=True, help='folder of the outputs (.vrt + tiles) and '
                      'workflow.json; run the same command again to resume')
    step.add_argument('--mask-vegetation', action='store_true', help='mask NDVI above --ndvi-threshold')
    step.add_argument('--exclude-polygons', help='polygons masked like water (villages, buildings)')
    step.add_argument('--indices', default='', help='comma-separated GF-2 index ids for an extra indices.vrt')
    step.add_argument('--variogram', dest='variogram_model', metavar='VARIOGRAM',
                      default=defaults['variogram_model'],
                      help='variogram model (auto: the best by leave-one-out)')
    step.add_argument('--neighbours', type=int, default=defaults['neighbours'],
                      help='nearest samples per prediction (0: all)')
    step.add_argument('--block', dest='neighbourhood_block', metavar='BLOCK', type=int,
                      default=defaults['neighbourhood_block'], help=BLOCK_HELP)
    step.add_argument('--kriging-margin', type=float, default=defaults['kriging_margin'],
                      help='Kriging over the samples\' extent plus this distance (image CRS units), within '
                      'the image')
    step.add_argument('--krige-whole-image', action='store_true', help='krige onto every pixel of the image')
    step.add_argument('--bins', dest='histogram_bins', metavar='BINS', type=int,
                      default=defaults['histogram_bins'],
                      help='histogram bins of the anomaly statistics')
    for name in ('ndvi_threshold', 'ndwi_threshold', 'nir_water_threshold', 'measurement_error', 'k',
                 'percentile'):
        step.add_argument(f'--{name.replace("_", "-")}', type=float, default=defaults[name])
    step.add_argument('--ca-segments', type=int, choices=(2, 3), default=defaults['ca_segments'])
    step.set_defaults(handler=workflow)


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
    written = args.output if args.step != 'workflow' else f'the outputs into {args.output_dir}'
    print(f'{run.stats["computed"]} tiles computed, {run.stats["skipped"]} reused; wrote {written}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
