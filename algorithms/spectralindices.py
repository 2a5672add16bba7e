"""Band ratios and mineral / alteration / vegetation indices with sensor presets."""
from qgis.core import (
    NULL,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMatrix,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.distributed import steps
from ..core.errors import InputError
from ..core.imagery import indices as core
from ..core.raster.blockio import raster_info
from .glue import styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run

SENSORS = (('aster', 'ASTER (14 bands: 1-3N, 4-9, 10-14)'),
           ('sentinel2', 'Sentinel-2 MSI (12-band L2A stack)'),
           ('landsat8', 'Landsat 8/9 OLI (bands 1-7)'),
           ('gf2', 'GF-2 PMS (4 bands)'),
           (None, 'None: custom ratios only'))


def preset_list():
    return '\n'.join(f'{sensor}: ' + ', '.join(f'{index.id} = {index.name}'
                                               for index in core.sensor_indices(sensor))
                     for sensor, _ in SENSORS if sensor)


class SpectralIndicesAlgorithm(RsGeochemAlgorithm):
    INPUT = 'INPUT'
    SENSOR = 'SENSOR'
    INDICES = 'INDICES'
    CUSTOM_RATIOS = 'CUSTOM_RATIOS'
    BAND_ORDER = 'BAND_ORDER'
    OUTPUT = 'OUTPUT'

    ALGORITHM_ID = 'spectralindices'
    DISPLAY_NAME = 'Spectral indices and band ratios'
    GROUP_ID = 'imagecorrection'
    RUNS_ON_CLUSTER = True
    TAGS = ('band ratio', 'mineral index', 'alteration', 'NDVI', 'NDWI', 'ASTER', 'Sentinel-2', 'Landsat',
            'GF-2', 'iron oxide', 'clay')
    HELP = (
        'Computes band ratios and normalised differences - mineral, alteration, vegetation and water '
        'indices - one output band per index, to map iron oxides, clays, carbonates or silica, or to make '
        'inputs for "Laplacian pyramid fusion".\n'
        'Use it on reflectance (from "Radiometric calibration" and "Dark object subtraction") for values '
        'comparable between scenes. Give the Multispectral raster and a Sensor preset (its indices are '
        'listed below; choose some by their ids in Preset index ids), and/or Custom ratios: rows of name, '
        'numerator bands, denominator bands, a band list being band numbers or names joined by + or - '
        '(e.g. "4+6" over "5", or "B8-B4" over "B8+B4"; parsed, never run as code).\n'
        'Output: a float32 raster, one band per index described by its name (nodata -9999), loaded with a '
        'red-to-green colour ramp on the first index.\n'
        'Method details. Presets (resources/indices.json, each index with its source): the ASTER mineral '
        'indices of Kalinowski & Oliver (2004, ASTER Mineral Index Processing Manual, Geoscience '
        'Australia) - ferric iron 2/1, ferrous iron 5/3+1/2, gossan 4/2, ferric oxides 4/3, (7+9)/8, '
        '(6+9)/(7+8), (6+9)/8, dolomite (6+8)/7, carbonate 13/14, sericite (5+7)/6, alunite/kaolinite '
        '(4+6)/5, phengite 5/6, kaolinite 7/5, clay (5×7)/6², silica 11/10, 11/12, 13/10, SiO2 13/12, ...; '
        'for Sentinel-2, Landsat 8/9 and GF-2 the iron-oxide (red/blue, Segal 1982), ferric-iron '
        '(red/green), ferrous (SWIR1/NIR, Sabins 1999) and clay/hydroxyl (SWIR1/SWIR2, Sabins 1999) ratios '
        'the bands allow, NDVI (Rouse et al. 1974) and NDWI (McFeeters 1996). Bands are found by their '
        'descriptions (B4, B04, B8A, B3N, ...), else by position in the sensor\'s standard stack order, or '
        'by the Band names of the input, in order. A pixel is nodata where a band it needs is nodata, a '
        'denominator is exactly zero or the result is not finite.\n'
        '\nPreset index ids:\n') + preset_list()

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Multispectral raster')),
                 'Multiband raster of one sensor (reflectance preferred). Nodata values are respected.')
        self.add(QgsProcessingParameterEnum(self.SENSOR, self.tr('Sensor preset'),
                                            [label for _, label in SENSORS], defaultValue=3),
                 'Sensor whose index table and band order apply; "None" computes only the custom ratios.')
        self.add(QgsProcessingParameterString(self.INDICES, self.tr('Preset index ids (comma-separated)'),
                                              optional=True),
                 'Ids of the preset indices to compute, e.g. "aster_ferric_iron, aster_kaolinite" (the '
                 'list is in the algorithm help). Empty: every index of the preset that the raster\'s '
                 'bands allow; the others are listed in the log.')
        self.add(QgsProcessingParameterMatrix(
            self.CUSTOM_RATIOS, self.tr('Custom ratios'), numberRows=0, hasFixedNumberRows=False,
            headers=[self.tr('Name'), self.tr('Numerator bands'), self.tr('Denominator bands')],
            optional=True),
            'Extra ratios, one row each: a name (used as band description), the numerator bands and the '
            'denominator bands as band numbers or names joined by + or - (e.g. 5+7 over 6). Numerator '
            'and denominator are each the sum of their bands.')
        self.add(QgsProcessingParameterString(self.BAND_ORDER, self.tr('Band names of the input, in order'),
                                              optional=True),
                 'Comma-separated sensor band names, one per input band (e.g. "B2,B3,B4,B5,B6,B7" for a '
                 'Landsat 8 stack without band 1). Empty: band descriptions, else the standard order.',
                 advanced=True)
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Indices')),
                 'Float32 GeoTIFF with one band per index (description = index name).')
        self.add_block_memory()

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        info = raster_info(path, self.INPUT)
        sensor_id = SENSORS[self.parameterAsEnum(parameters, self.SENSOR, context)][0]
        sensor = core.load_table()[0].get(sensor_id)
        requested = self.names(parameters, self.INDICES, context)
        band_order = self.names(parameters, self.BAND_ORDER, context)
        cells = self.parameterAsMatrix(parameters, self.CUSTOM_RATIOS, context)
        cells = [] if all(cell is None or cell == NULL for cell in cells) else cells
        custom = core.parse_custom_ratios(cells, self.CUSTOM_RATIOS)
        lookup, method = core.band_lookup(sensor, info.band_count, info.descriptions, band_order,
                                          self.BAND_ORDER)
        chosen = self.preset_indices(sensor, requested, lookup, info.band_count, feedback)
        for ratio in custom:
            missing = core.missing_tokens(ratio, lookup, info.band_count)
            if missing:
                raise InputError(f'custom ratio "{ratio.name}" names band(s) {", ".join(missing)} that the '
                                 f'{info.band_count}-band raster does not have; use band numbers 1-'
                                 f'{info.band_count} or band names {", ".join(lookup) or "(none set)"}.',
                                 self.CUSTOM_RATIOS)
        selected = chosen + custom
        if not selected:
            raise InputError('nothing to compute: choose a SENSOR preset or give custom ratios.',
                             self.CUSTOM_RATIOS)
        feedback.pushInfo(f'Bands matched by {method}.')
        for index in selected:
            feedback.pushInfo(f'{index.name}: {index.source}')
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        valid = self.write(path, info, selected, lookup, output, parameters, context, feedback)
        pixels = info.grid.width * info.grid.height
        for index, count in zip(selected, valid):
            feedback.pushInfo(f'{index.name}: {count} valid pixels ({100 * count / pixels:.1f}%)')
        names = [index.name.split(' (')[0] for index in selected]
        listed = ', '.join(names[:4]) + (', ...' if len(names) > 4 else '')
        name_output_layer(context, output, f'Spectral indices ({listed})', styles.diverging())
        return {self.OUTPUT: output}

    def names(self, parameters, key, context):
        """Comma-separated names of a string parameter, blanks dropped."""
        return [name.strip() for name in self.parameterAsString(parameters, key, context).split(',')
                if name.strip()]

    def preset_indices(self, sensor, requested, lookup, band_count, feedback):
        if sensor is None:
            if requested:
                raise InputError('preset ids given with SENSOR "None"; choose the sensor they belong to.',
                                 self.INDICES)
            return []
        chosen, skipped = core.select_indices(sensor, requested, lookup, band_count, self.INPUT, self.INDICES)
        if skipped:
            needs = (f'{index.id} (needs {", ".join(core.missing_tokens(index, lookup, band_count))})'
                     for index in skipped)
            feedback.pushWarning('Skipped (bands missing from the raster): ' + ', '.join(needs))
        return chosen

    def write(self, path, info, selected, lookup, output, parameters, context, feedback):
        progress, cancel = progress_callbacks(feedback)
        memory_mb = self.block_memory(parameters, context)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            return steps.indices(run, path, output, selected, lookup, info.band_count, memory_mb)
        return core.write_indices(path, selected, lookup, info.band_count, output, memory_mb, progress,
                                  cancel, self.INPUT)
