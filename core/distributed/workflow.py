"""The rare-earth inversion workflow's block-wise steps one after another, tile by tile on a cluster
(or here): the shipped rareearthinversion model's steps 1 TOA reflectance, 2 surface reflectance
(DOS1), 3 surface mask (and optional spectral indices), 4 Kriging of the samples, 8 the content
map of a trained inversion model and the thresholds of 9. Training (steps 5-7) reads a few hundred
samples, not the image: train in QGIS (or on one scene) and give the ONNX model.

Every raster goes into the output folder as a .vrt with its tiles in "<name>.tiles"; the global
fits (dark objects, variogram, anomaly statistics) are kept in workflow.json under a fingerprint
of what they were fitted from. The same command run again after an interruption skips complete
tiles and fits; a changed parameter or input redoes what depends on it."""
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..anomalies import areas
from ..anomalies.fractal import concentration_area
from ..geostat.kriging_grid import samples_grid
from ..geostat.variogram import VariogramModel
from ..imagery import indices as index_table
from ..imagery.darkobject import DOS1, band_names, dark_objects, path_reflectance, surface_descriptions
from ..imagery.mask import PolygonBurner
from ..raster.blockio import DEFAULT_MEMORY_MB, raster_info
from ..raster.lattice import window_within
from ..raster.scratch import partial_path
from . import steps
from .inputs import calibration_coefficients, kriging_inputs, read_polygons, variogram
from .manifest import fingerprint
from .runner import input_version

CHECKPOINT_NAME = 'workflow.json'
GF2_BANDS = {'green': 2, 'red': 3, 'nir': 4}       # surfacemask's defaults: GF-2 PMS band order


@dataclass(frozen=True)
class RareEarthSettings:
    """The workflow's inputs, named and defaulted as the rareearthinversion model's."""
    image: str
    gains: str
    esun: str
    samples: str
    field: str
    model: str
    output_dir: str
    sensor: str = 'gf2_pms1'
    metadata: str | None = None
    offsets: str = ''
    mask_vegetation: bool = False
    ndvi_threshold: float = 0.3
    ndwi_threshold: float = 0.0
    nir_water_threshold: float = 0.07
    exclude_polygons: str | None = None
    indices: tuple = ()                 # GF-2 preset index ids for an extra indices raster
    measurement_error: float = 0.0
    neighbours: int = 32
    neighbourhood_block: int = 0
    kriging_margin: float = 500.0       # map units around the samples' extent (the model's KRIGING_MARGIN)
    krige_whole_image: bool = False
    variogram_model: str = 'auto'
    k: float = 2.0
    percentile: float = 95.0
    ca_segments: int = 3
    histogram_bins: int = 10000
    memory_mb: int = DEFAULT_MEMORY_MB


class Checkpoint:
    """Global fits of a workflow run, JSON in `path`, each under the fingerprint of its inputs."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.reused = []

    def fit(self, name, description, compute):
        """The recorded value of `name` when `description` is unchanged, else compute() (JSON-able),
        recorded."""
        key = fingerprint(description)
        entry = self.entries.get(name)
        if entry is not None and entry.get('key') == key:
            self.reused.append(name)
            return entry['value']
        value = compute()
        self.entries[name] = {'key': key, 'value': value}
        temporary = partial_path(self.path)
        temporary.write_text(json.dumps(self.entries, indent=1))
        os.replace(temporary, self.path)
        return value


def rare_earth_workflow(run, settings, report=print):
    """Run the block-wise steps; returns ({output name: path}, the global fits reused from an earlier
    run) and reports each step's result."""
    s = settings
    folder = Path(s.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = {name: str(folder / f'{name}.vrt') for name in (
        'toa_reflectance', 'surface_reflectance', 'surface_mask', 'kriged', 'kriging_variance',
        'predicted_map')}
    checkpoint = Checkpoint(folder / CHECKPOINT_NAME)

    a, b, descriptions = calibration_coefficients(s.image, s.sensor, '', s.metadata, s.gains, s.offsets,
                                                  s.esun)
    steps.calibrate(run, s.image, out['toa_reflectance'], a, b, descriptions, True, s.memory_mb)
    report(f'1 TOA reflectance: {out["toa_reflectance"]}')

    surface_reflectance(run, s, out, checkpoint, report)

    burner = None
    if s.exclude_polygons:
        crs_wkt = raster_info(out['surface_reflectance']).grid.crs_wkt
        burner = PolygonBurner(read_polygons(s.exclude_polygons, crs_wkt), crs_wkt)
    thresholds = {'ndvi_threshold': s.ndvi_threshold if s.mask_vegetation else None,
                  'ndwi_threshold': s.ndwi_threshold,
                  'nir_water_threshold': s.nir_water_threshold if s.nir_water_threshold > 0 else None}
    counts = steps.surface_mask(run, out['surface_reflectance'], out['surface_mask'], GF2_BANDS, thresholds,
                                burner, s.memory_mb)
    report(f'3 surface mask: {counts.masked} of {counts.valid} valid pixels masked: {out["surface_mask"]}')
    if s.indices:
        out['indices'] = str(folder / 'indices.vrt')
        preset_indices(run, out['surface_reflectance'], out['indices'], 'gf2', s.indices, s.memory_mb)
        report(f'3 spectral indices {", ".join(s.indices)}: {out["indices"]}')

    krige(run, s, out, checkpoint, report)

    result = steps.infer(run, out['surface_reflectance'], s.model, out['predicted_map'], [1, 2, 3, 4],
                         out['surface_mask'], s.memory_mb, minimum=0.0)
    report(f'8 content map: {result.predicted} pixels predicted ({result.clipped} negative set to 0): '
           f'{out["predicted_map"]}')

    found = anomaly_thresholds(run, s, out, checkpoint)
    report('9 anomaly thresholds: ' + ', '.join(f'{name} {value:.6g}' for name, value in found.items()))
    report(f'   (polygons: the "High-anomaly areas" algorithm on {out["predicted_map"]} with the mask)')
    if checkpoint.reused:
        report(f'reused from the earlier run: {", ".join(checkpoint.reused)} (and the complete tiles)')
    return out, checkpoint.reused


def surface_reflectance(run, s, out, checkpoint, report):
    """Step 2: DOS1 dark objects from the tree-reduced histogram, then the subtraction."""
    toa = out['toa_reflectance']
    names = band_names(raster_info(toa).descriptions)

    def fit():
        objects = dark_objects(steps.dark_histogram(run, toa, s.memory_mb), names=names)
        return {'dark_values': [obj.value for obj in objects],
                'path_reflectance': [path_reflectance(obj.value, 1.0) for obj in objects]}
    dark = checkpoint.fit('dark_objects', {'input': input_version(toa)}, fit)
    steps.dark_subtract(run, toa, out['surface_reflectance'], dark['path_reflectance'], 1.0,
                        surface_descriptions(names, DOS1), s.memory_mb)
    values = ', '.join(f'{value:.5f}' for value in dark['path_reflectance'])
    report(f'2 surface reflectance (path reflectance {values}): {out["surface_reflectance"]}')


def preset_indices(run, input_path, output_path, sensor_id, chosen_ids, memory_mb=DEFAULT_MEMORY_MB):
    """Spectral indices of a sensor preset (ids; none: all) tile by tile; {index name: valid pixels}."""
    info = raster_info(input_path, 'INPUT')
    sensor = index_table.load_table()[0][sensor_id]
    lookup, _ = index_table.band_lookup(sensor, info.band_count, info.descriptions, None, 'BAND_ORDER')
    chosen, _ = index_table.select_indices(sensor, list(chosen_ids), lookup, info.band_count, 'INPUT',
                                           'INDICES')
    valid = steps.indices(run, input_path, output_path, chosen, lookup, info.band_count, memory_mb)
    return {index.name: int(count) for index, count in zip(chosen, valid)}


def krige(run, s, out, checkpoint, report):
    """Step 4: the samples kriged onto the surface reflectance's grid over their extent plus the
    Kriging margin, within the image, or the whole image (variogram fitted once)."""
    grid, samples = kriging_inputs(s.samples, s.field, out['surface_reflectance'])
    if not s.krige_whole_image:
        grid = window_within(samples_grid(samples.x, samples.y, s.kriging_margin, grid), grid)
    model = checkpoint.fit(
        'variogram', {'samples': [samples.x, samples.y, samples.z], 'model': s.variogram_model,
                      'neighbours': s.neighbours, 'error': s.measurement_error},
        lambda: asdict(variogram(samples, s.variogram_model, n_neighbours=s.neighbours,
                                 error_variance=s.measurement_error)))
    model = VariogramModel(**model)
    summary = steps.krige(run, samples, model, grid, out['kriged'], out['kriging_variance'], (), s.neighbours,
                          0.0, s.neighbourhood_block, s.memory_mb)
    report(f'4 Kriging ({model.name}: nugget {model.nugget:.6g}, partial sill {model.psill:.6g}, range '
           f'{model.range:.6g}; {len(samples)} samples, {summary.mode}): {out["kriged"]}')


def anomaly_thresholds(run, s, out, checkpoint):
    """Step 9's thresholds of the content map (mask applied) by every method, from statistics
    tree-reduced from the tiles."""
    source = areas.ValueSource(out['predicted_map'], 1, out['surface_mask'], s.memory_mb)

    def fit():
        statistics = steps.anomaly_statistics(run, source, s.histogram_bins)
        found = {f'mean + {s.k:g} SD': areas.mean_sd_threshold(statistics, s.k, 'K'),
                 f'median + {s.k:g} MAD': areas.median_mad_threshold(statistics, s.k, 'K'),
                 f'{s.percentile:g}th percentile': areas.percentile_threshold(statistics, s.percentile,
                                                                             'PERCENTILE')}
        if statistics.log_counts is not None:
            fractal = concentration_area(statistics.log_edges, statistics.log_counts, statistics.pixel_area,
                                         s.ca_segments, 'CA_SEGMENTS')
            found[f'C-A fractal, {len(fractal.segments)} segments'] = fractal.threshold
        return {name: float(value) for name, value in found.items()}
    return checkpoint.fit('anomaly_thresholds', {
        'content': input_version(out['predicted_map']), 'mask': input_version(out['surface_mask']),
        'k': s.k, 'percentile': s.percentile, 'segments': s.ca_segments, 'bins': s.histogram_bins}, fit)
