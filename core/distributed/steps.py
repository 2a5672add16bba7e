"""The block-wise steps on tiles: each task runs the same core function as the local path on a VRT
window of its inputs (halo included) and writes its own GeoTIFF tile; the driver-side functions
resolve everything global once (band choice, model layout), broadcast it with the samples / model,
and sum the tiles' partial counts."""
import math
from dataclasses import asdict, dataclass, replace
from functools import reduce

import numpy as np

from ..anomalies import areas
from ..errors import InputError
from ..geostat.kriging_grid import DriftRasters, GridSummary, krige_grid
from ..imagery import mask
from ..imagery.calibration import calibrate_raster
from ..imagery.darkobject import read_histogram, subtract_raster
from ..imagery.indices import check_some_valid, write_indices
from ..inversion.inference import (
    INPUT,
    MASK,
    MODEL,
    ApplyResult,
    apply_model,
    batch_size,
    check_mask,
    check_not_digital_numbers,
    model_spec,
    open_session,
    patch_note,
    select_bands,
)
from ..raster.blockio import DEFAULT_MEMORY_MB, raster_info
from .runner import reduce_tiles, run_step, tile_result, valid_pixels, write_tile
from .tiles import sub_grid, window_rasters

OUTPUT, OUTPUT_VARIANCE, DRIFT_RASTERS = 'OUTPUT', 'OUTPUT_VARIANCE', 'DRIFT_RASTERS'
TASK_THREADS = 1  # a task uses one core: parallelism comes from the workers


@dataclass(frozen=True)
class Calibration:
    """What every calibration tile needs: out = a * DN + b per band."""
    input_path: str
    a: tuple
    b: tuple
    descriptions: tuple
    zero_is_nodata: bool
    memory_mb: int


def window_tile(tile, folder, input_path, write):
    """write(window raster, output path) over the tile's window of one input; returns (the tile's
    files, what write returned)."""
    with window_rasters([input_path], tile.read_window) as (window,):
        return write_tile(folder, tile, [OUTPUT], lambda out: write(window, out[OUTPUT]))


def run_on_input(run, task, p, output_path, descriptions, description=None, **options):
    """run_step of a task reading the raster p.input_path and writing one output on its grid."""
    return run_step(run, task, raster_info(p.input_path, INPUT).grid, p, [(INPUT, p.input_path)],
                    {OUTPUT: (output_path, list(descriptions))}, description or asdict(p), **options)


def calibration_task(tile, folder, p):
    files, _ = window_tile(tile, folder, p.input_path, lambda window, out: calibrate_raster(
        window, out, np.array(p.a), np.array(p.b), p.descriptions, p.zero_is_nodata, p.memory_mb))
    return tile_result(folder, files)


def calibrate(run, input_path, output_path, a, b, descriptions, zero_is_nodata=True,
              memory_mb=DEFAULT_MEMORY_MB):
    """core.imagery.calibration.calibrate_raster tile by tile (see runner.ClusterRun)."""
    p = Calibration(str(input_path), tuple(map(float, a)), tuple(map(float, b)), tuple(descriptions),
                    bool(zero_is_nodata), int(memory_mb))
    run_on_input(run, calibration_task, p, output_path, p.descriptions)


@dataclass(frozen=True)
class DarkObject:
    """What the dark-object passes need (path reflectance and Tz for the subtraction)."""
    input_path: str
    path_values: tuple
    tz: float
    descriptions: tuple
    memory_mb: int


def histogram_task(tile, p):
    with window_rasters([p.input_path], tile.read_window) as (window,):
        return read_histogram(window, p.memory_mb)


def merge_histograms(first, *others):
    return first.merge(*others)


def dark_histogram(run, input_path, memory_mb=DEFAULT_MEMORY_MB):
    """core.imagery.darkobject.read_histogram of the whole raster, tree-reduced from the tiles'."""
    p = DarkObject(str(input_path), (), 1.0, (), int(memory_mb))
    return reduce_tiles(run, histogram_task, merge_histograms, raster_info(input_path, INPUT).grid, p,
                        [(INPUT, input_path)])


def subtraction_task(tile, folder, p):
    files, _ = window_tile(tile, folder, p.input_path, lambda window, out: subtract_raster(
        window, out, p.path_values, p.tz, p.descriptions, p.memory_mb))
    return tile_result(folder, files)


def dark_subtract(run, input_path, output_path, path_values, tz, descriptions, memory_mb=DEFAULT_MEMORY_MB):
    """core.imagery.darkobject.subtract_raster tile by tile."""
    p = DarkObject(str(input_path), tuple(map(float, path_values)), float(tz), tuple(descriptions),
                   int(memory_mb))
    run_on_input(run, subtraction_task, p, output_path, p.descriptions)


@dataclass(frozen=True)
class SurfaceMask:
    """What every surface-mask tile needs."""
    input_path: str
    bands: dict
    thresholds: dict
    burner: object          # core.imagery.mask.PolygonBurner (sent as its polygons) or None
    memory_mb: int


def surface_mask_task(tile, folder, p):
    files, counts = window_tile(tile, folder, p.input_path, lambda window, out: mask.write_surface_mask(
        window, out, p.bands, p.thresholds, p.burner, p.memory_mb, require_valid=False))
    return tile_result(folder, files, counts=asdict(counts))


def surface_mask(run, input_path, output_path, bands, thresholds, burner=None, memory_mb=DEFAULT_MEMORY_MB):
    """core.imagery.mask.write_surface_mask tile by tile; returns the MaskCounts summed."""
    p = SurfaceMask(str(input_path), dict(bands), dict(thresholds), burner, int(memory_mb))
    description = {**asdict(p), 'burner': burner.arguments if burner else None}

    def total(results):
        counts = mask.MaskCounts()
        for result in results:
            counts.add(mask.MaskCounts(**result['counts']))
        return counts
    results = run_on_input(run, surface_mask_task, p, output_path, ['keep (1) / masked (0)'], description,
                           check=lambda results: mask.check_some_valid(total(results), INPUT))
    return total(results)


@dataclass(frozen=True)
class Indices:
    """What every index tile needs."""
    input_path: str
    indices: tuple
    lookup: dict
    band_count: int
    memory_mb: int


def indices_task(tile, folder, p):
    files, valid = window_tile(tile, folder, p.input_path, lambda window, out: write_indices(
        window, p.indices, p.lookup, p.band_count, out, p.memory_mb, require_valid=False))
    return tile_result(folder, files, valid=[int(v) for v in valid])


def indices(run, input_path, output_path, selected, lookup, band_count, memory_mb=DEFAULT_MEMORY_MB):
    """core.imagery.indices.write_indices tile by tile; returns the valid pixels of each index."""
    p = Indices(str(input_path), tuple(selected), dict(lookup), int(band_count), int(memory_mb))
    results = run_on_input(run, indices_task, p, output_path, [index.name for index in selected],
                           check=lambda results: check_some_valid(valid_counts(results), INPUT))
    return valid_counts(results)


def valid_counts(results):
    return np.sum([result['valid'] for result in results], axis=0)


@dataclass(frozen=True)
class Inference:
    """What every inversion-model tile needs (bands resolved once, on the client)."""
    input_path: str
    model_path: str
    bands: tuple
    mask_path: str | None
    memory_mb: int
    minimum: float | None = None     # predictions below are set to it (a content cannot be negative)


def inference_task(tile, folder, p):
    paths = [p.input_path] + ([p.mask_path] if p.mask_path else [])
    with window_rasters(paths, tile.read_window) as windows:
        files, result = write_tile(folder, tile, [OUTPUT], lambda out: apply_model(
            windows[0], p.model_path, out[OUTPUT], list(p.bands), windows[1] if p.mask_path else None,
            TASK_THREADS, p.memory_mb, require_predictions=False, minimum=p.minimum))
    # counted in the tile file: a patch model also predicts the halo, which is not the tile's own
    # (its clipped count includes the halo's)
    return tile_result(folder, files, predicted=valid_pixels(files[OUTPUT]), blocks=result.blocks,
                       clipped=result.clipped, lowest=result.lowest if result.clipped else None)


def infer(run, input_path, model_path, output_path, bands=None, mask_path=None,
          memory_mb=DEFAULT_MEMORY_MB, minimum=None):
    """core.inversion.inference.apply_model tile by tile (a patch model's tiles read the k // 2
    pixels around them); returns an ApplyResult summed over the tiles."""
    info = raster_info(input_path, INPUT)
    spec = model_spec(open_session(model_path, TASK_THREADS), model_path)
    check_not_digital_numbers(spec, info)
    bands, notes = select_bands(spec, info, bands)
    if mask_path:
        check_mask(mask_path, info.grid)
    p = Inference(str(input_path), str(model_path), tuple(bands), str(mask_path) if mask_path else None,
                  int(memory_mb), minimum)
    inputs = [(INPUT, input_path), (MODEL, model_path)] + ([(MASK, mask_path)] if mask_path else [])

    def check(results):
        if sum(result['predicted'] for result in results) == 0:
            raise InputError('no pixel has a value in every used band (nodata everywhere'
                             f'{", or masked" if mask_path else ""}{patch_note(spec)}); check the '
                             'bands, their nodata value and the mask.', INPUT)
    results = run_step(run, inference_task, info.grid, p, inputs, {OUTPUT: (output_path, [spec.target])},
                       asdict(p), halo=spec.halo, check=check)
    predicted = sum(result['predicted'] for result in results)
    lowest = [result['lowest'] for result in results if result.get('lowest') is not None]
    return ApplyResult(bands, spec.layout, spec.target, batch_size(spec, len(bands), memory_mb),
                       sum(result['blocks'] for result in results), predicted,
                       info.grid.width * info.grid.height - predicted, notes=notes,
                       clipped=sum(result.get('clipped', 0) for result in results),
                       lowest=min(lowest, default=math.inf))


@dataclass(frozen=True)
class Kriging:
    """What every kriging tile needs: sent once to each worker."""
    samples: object          # core.geostat.kriging.Samples
    model: object            # core.geostat.variogram.VariogramModel
    grid: object             # the whole output Grid
    drift_paths: tuple
    n_neighbours: int
    radius: float
    block_pixels: int
    with_variance: bool
    memory_mb: int


def kriging_task(tile, folder, p):
    grid = sub_grid(p.grid, tile.col, tile.row, tile.cols, tile.rows)
    drift = DriftRasters(p.drift_paths, grid, DRIFT_RASTERS) if p.drift_paths else None
    keys = [OUTPUT, OUTPUT_VARIANCE] if p.with_variance else [OUTPUT]
    files, summary = write_tile(folder, tile, keys, lambda out: krige_grid(
        p.samples, p.model, grid, out[OUTPUT], out.get(OUTPUT_VARIANCE), drift, p.n_neighbours, p.radius,
        p.block_pixels, p.memory_mb, threads=TASK_THREADS))
    return tile_result(folder, files, mode=summary.mode, block_pixels=summary.block_pixels,
                       nodata_pixels=summary.nodata_pixels)


def krige(run, samples, model, grid, prediction_path, variance_path=None, drift_paths=(), n_neighbours=0,
          radius=0.0, block_pixels=0, memory_mb=DEFAULT_MEMORY_MB):
    """core.geostat.kriging_grid.krige_grid tile by tile: the samples and the variogram model go to
    each worker once; tiles are cut at multiples of the shared-neighbourhood block side (exact
    per-pixel neighbourhoods need no such cut), so every pixel gets the neighbour set it gets
    locally. Returns a GridSummary."""
    p = Kriging(samples, model, grid, tuple(str(path) for path in drift_paths), int(n_neighbours),
                float(radius), int(block_pixels), bool(variance_path), int(memory_mb))
    outputs = {OUTPUT: (prediction_path, ['prediction'])}
    if variance_path:
        outputs[OUTPUT_VARIANCE] = (variance_path, ['kriging variance'])
    inputs = [(DRIFT_RASTERS, path) for path in p.drift_paths]
    description = {**asdict(p), 'samples': [samples.x, samples.y, samples.z, samples.drift],
                   'model': repr(model)}
    results = run_step(run, kriging_task, grid, p, inputs, outputs, description,
                       multiple=max(1, p.block_pixels))
    return GridSummary(results[0]['mode'], results[0]['block_pixels'], grid.width * grid.height,
                       sum(result['nodata_pixels'] for result in results))


@dataclass(frozen=True)
class AnomalyValues:
    """What the anomaly statistics passes need."""
    input_path: str
    band: int
    mask_path: str | None
    memory_mb: int
    bins: int = 0
    total: object = None     # core.anomalies.areas.Moments of the whole raster (second pass)

    @property
    def paths(self):
        return [self.input_path] + ([self.mask_path] if self.mask_path else [])


def value_source(p, windows):
    return areas.ValueSource(windows[0], p.band, windows[1] if p.mask_path else None, p.memory_mb)


def moments_task(tile, p):
    with window_rasters(p.paths, tile.read_window) as windows:
        return areas.moments(value_source(p, windows))


def merge_moments(*parts):
    return reduce(areas.Moments.merge, parts)


def histograms_task(tile, p):
    with window_rasters(p.paths, tile.read_window) as windows:
        return areas.histograms(value_source(p, windows), p.total, p.bins)


def add_histograms(*parts):
    counts = np.sum([part[0] for part in parts], axis=0)
    logs = None if parts[0][1] is None else np.sum([part[1] for part in parts], axis=0)
    return counts, logs


def anomaly_statistics(run, source, bins):
    """core.anomalies.areas.raster_statistics of a ValueSource: moments, then histograms over their
    range, each tree-reduced from the tiles' partial results. Counts are exact; mean and SD are
    combined in another order than locally (equal to ~1e-15 relative)."""
    p = AnomalyValues(str(source.path), source.band, source.mask and source.mask.info.path,
                      source.memory_mb)
    inputs = [(INPUT, source.path)] + ([(MASK, p.mask_path)] if p.mask_path else [])
    grid = source.info.grid
    total = reduce_tiles(replace(run, progress=areas.stage(run.progress, 0, 0.5)), moments_task,
                         merge_moments, grid, p, inputs)
    areas.check_moments(total, source.input_key)
    counts, log_counts = reduce_tiles(replace(run, progress=areas.stage(run.progress, 0.5, 1.0)),
                                      histograms_task, add_histograms, grid,
                                      replace(p, bins=int(bins), total=total), inputs)
    return areas.statistics_of(total, counts, log_counts, source.pixel_area)
