"""Processing glue: DOS1 / COST dark-object subtraction of a TOA reflectance raster."""
import numpy as np
from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.distributed import steps
from ..core.imagery.darkobject import (
    COST,
    DOS1,
    band_names,
    dark_objects,
    path_reflectance,
    read_histogram,
    subtract_raster,
    surface_descriptions,
    transmittance,
)
from ..core.imagery.sensor_metadata import read_metadata
from ..core.raster.blockio import raster_info
from ..core.report import page
from .glue import compat, styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run
from .glue.tables import table_fields, write_table

METHODS = ((DOS1, 'DOS1 (Chavez 1996: Tz = Tv = 1)'), (COST, 'COST (Chavez 1996: Tz = cos(theta_z))'))
TABLE_FIELDS = (('band', compat.FIELD_INT), ('name', compat.FIELD_STRING),
                ('valid_pixels', compat.FIELD_LONG), ('dark_rank', compat.FIELD_LONG),
                ('dark_value', compat.FIELD_DOUBLE), ('path_reflectance', compat.FIELD_DOUBLE),
                ('transmittance', compat.FIELD_DOUBLE))


MIN_SCENE_PIXELS = 1000  # Chavez's dark-object count for a full scene


class DarkObjectSubtractionAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'darkobjectsubtraction'
    DISPLAY_NAME = 'Dark object subtraction (DOS1 / COST)'
    GROUP_ID = 'imagecorrection'
    RUNS_ON_CLUSTER = True
    TAGS = ('atmospheric correction', 'dos', 'dos1', 'cost', 'dark object', 'haze', 'path radiance',
            'surface reflectance', 'chavez')
    HELP = (
        'Corrects a TOA reflectance image for the haze of the atmosphere, giving surface reflectance: the '
        'image-based dark-object method of Chavez (1996).\n'
        'Use it after "Radiometric calibration" and before any step that compares pixels with ground '
        'samples (masks, sample sets, inversion). Give the TOA reflectance image; DOS1 (default) needs '
        'nothing else; COST also needs the sun elevation (Sun elevation, or the Product metadata file).\n'
        'Outputs: the surface reflectance (loaded as a colour composite), a table and output strings with '
        'each band\'s dark value and path reflectance, and an optional HTML report with the dark end of '
        'each histogram.\n'
        'Method details. The darkest pixels of each band are assumed to reflect 1 %, so what they show '
        'above that is path reflectance (haze): path reflectance = dark value - 0.01 × Tz, surface '
        'reflectance = (TOA - path) / Tz, negative results set to 0; DOS1: Tz = 1; COST: Tz = cos(sun '
        'zenith) (Chavez 1996, Photogramm. Eng. Remote Sens. 62, 1025-1036). Dark value: the reflectance '
        'of the k-th darkest valid pixel of the band, k = the smaller of Dark object: pixel count N '
        '(Chavez\'s 1000 pixels for a full scene) and Dark object: at most this percentile of the valid '
        'pixels, so small subsets are not corrected with a mid-histogram value (set the percentile to 100 '
        'for the pure count rule). Unlike a "lowest DN with at least N pixels" rule this does not depend '
        'on bit depth. The histogram (1e-5 reflectance bins) and the correction run block by block.')

    INPUT = 'INPUT'
    METHOD = 'METHOD'
    SUN_ELEVATION = 'SUN_ELEVATION'
    METADATA = 'METADATA'
    PIXEL_COUNT = 'PIXEL_COUNT'
    PERCENTILE = 'PERCENTILE'
    OUTPUT = 'OUTPUT'
    OUTPUT_TABLE = 'OUTPUT_TABLE'
    OUTPUT_HTML = 'OUTPUT_HTML'
    DARK_VALUES = 'DARK_VALUES'
    PATH_REFLECTANCE = 'PATH_REFLECTANCE'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('TOA reflectance image')),
                 'Multiband top-of-atmosphere reflectance (unitless, about 0-1), e.g. from '
                 '"Radiometric calibration". Nodata pixels are skipped and stay nodata.')
        self.add(QgsProcessingParameterEnum(self.METHOD, self.tr('Method'),
                                            [label for _, label in METHODS], defaultValue=0),
                 'DOS1: subtract the path reflectance only. COST: also divide by the downward '
                 'transmittance cos(sun zenith), for low sun or hazy scenes (Chavez 1996).')
        self.add(QgsProcessingParameterNumber(
            self.SUN_ELEVATION, self.tr('Sun elevation (degrees, 0 = from metadata)'),
            QgsProcessingParameterNumber.Type.Double, 0.0, True, 0.0, 90.0),
            'COST only: sun elevation in degrees (90 - sun zenith); 0 reads it from the Product metadata '
            'file. "Radiometric calibration" reports it as Sun elevation used.')
        self.add(QgsProcessingParameterFile(self.METADATA, self.tr('Product metadata file'),
                                            QgsProcessingParameterFile.Behavior.File, optional=True),
                 'COST only, when the Sun elevation is 0: Landsat *_MTL.txt, Sentinel-2 MTD_MSIL1C.xml '
                 'or GF-2 scene .xml holding the sun angle.')
        self.add(QgsProcessingParameterNumber(
            self.PIXEL_COUNT, self.tr('Dark object: pixel count N'),
            QgsProcessingParameterNumber.Type.Integer, 1000, False, 1, 10 ** 9),
            'The dark value is that of the N-th darkest pixel (at most the percentile below, of the valid '
            'pixels). 1000 follows Chavez (1996) for full scenes.', advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.PERCENTILE, self.tr('Dark object: at most this percentile (%)'),
            QgsProcessingParameterNumber.Type.Double, 0.01, False, 0.0, 100.0),
            'Upper limit of the dark pixel\'s rank as a percentage of the valid pixels (0.01 % = 1 '
            'pixel in 10,000); keeps small subsets from using a mid-histogram value.', advanced=True)
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Surface reflectance')),
                 'Float32 GeoTIFF of dark-object corrected reflectance (>= 0), nodata -9999.')
        self.add(QgsProcessingParameterFeatureSink(
            self.OUTPUT_TABLE, self.tr('Dark objects'), compat.SOURCE_TABLE, optional=True),
            'Table (no geometry), one row per band: band, name, valid_pixels, dark_rank (k), '
            'dark_value (TOA reflectance), path_reflectance, transmittance (Tz).')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Dark object report'), 'HTML files (*.html)', optional=True,
            createByDefault=False),
            'Optional HTML report: the table and the dark end of each band\'s histogram.')
        self.add_block_memory()
        self.addOutput(QgsProcessingOutputString(self.DARK_VALUES, self.tr('Dark values (per band)')))
        self.addOutput(QgsProcessingOutputString(self.PATH_REFLECTANCE,
                                                 self.tr('Path reflectance (per band)')))

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        info = raster_info(path, self.INPUT)
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][0]
        sun_elevation = self.parameterAsDouble(parameters, self.SUN_ELEVATION, context) or None
        metadata_path = self.parameterAsFile(parameters, self.METADATA, context)
        if method == COST and sun_elevation is None and metadata_path:
            sun_elevation = read_metadata(metadata_path, None, self.METADATA).sun_elevation
        tz = transmittance(method, sun_elevation)
        names = band_names(info.descriptions)
        memory = self.block_memory(parameters, context)

        progress, cancel = progress_callbacks(feedback, 0.0, 40.0)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            histogram = steps.dark_histogram(run, path, memory)
        else:
            histogram = read_histogram(path, memory, progress, cancel, self.INPUT)
        objects = dark_objects(histogram, self.parameterAsInt(parameters, self.PIXEL_COUNT, context),
                               self.parameterAsDouble(parameters, self.PERCENTILE, context), names,
                               self.INPUT)
        paths = [path_reflectance(obj.value, tz) for obj in objects]
        fewest = min(obj.valid for obj in objects)
        if fewest < MIN_SCENE_PIXELS:
            feedback.pushWarning(f'{self.INPUT}: only {fewest} valid pixels in a band: in so small an image '
                                 'the darkest pixels need not be dark objects (shadow, water), so the path '
                                 'reflectance is a guess; run the correction on the whole scene.')
        for name, obj, value in zip(names, objects, paths):
            feedback.pushInfo(f'{name}: dark value {obj.value:.5f} (pixel {obj.count} of {obj.valid}), '
                              f'path reflectance {value:.5f}')

        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        descriptions = surface_descriptions(names, method)
        progress, cancel = progress_callbacks(feedback, 40.0, 100.0)
        if run is not None:
            run.progress = progress
            steps.dark_subtract(run, path, output, paths, tz, descriptions, memory)
        else:
            subtract_raster(path, output, paths, tz, descriptions, memory, progress, cancel, self.INPUT)

        results = {self.OUTPUT: output,
                   self.DARK_VALUES: ','.join(f'{obj.value:.6g}' for obj in objects),
                   self.PATH_REFLECTANCE: ','.join(f'{value:.6g}' for value in paths)}
        rows = [(i + 1, name, obj.valid, obj.count, obj.value, value, tz)
                for i, (name, obj, value) in enumerate(zip(names, objects, paths))]
        results.update(write_table(self, parameters, self.OUTPUT_TABLE, context, table_fields(TABLE_FIELDS),
                                   rows, f'Dark objects ({method})'))
        name_output_layer(context, output, f'Surface reflectance ({method})',
                          styles.natural_colour(descriptions))
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html_path:
            write_dark_object_report(html_path, method, rows, histogram, objects)
            results[self.OUTPUT_HTML] = html_path
        return results

def write_dark_object_report(path, method, rows, histogram, objects):
    figure, axes = page.new_figure(7.0, 4.0)
    for (_, name, *_), counts, obj in zip(rows, histogram.counts, objects):
        first = int(np.argmax(counts > 0))
        last = min(len(counts) - 1, first + int(round(0.1 / histogram.bin_width)))
        values = histogram.value(np.arange(first, last + 1))
        line, = axes.plot(values, np.cumsum(counts[first:last + 1]), label=name)
        axes.axvline(obj.value, color=line.get_color(), linestyle=':')
    axes.set_xlabel('TOA reflectance')
    axes.set_ylabel('pixels at or below (cumulative)')
    axes.set_yscale('log')
    axes.legend(fontsize='small')
    headers = ['band', 'name', 'valid pixels', 'dark rank k', 'dark value', 'path reflectance', 'Tz']
    page.write_report(path, f'Dark object subtraction ({method})', [
        ('Dark objects', page.table_html(headers, rows, digits=5)),
        ('Dark end of the histograms (dotted: dark value)', page.figure_html(figure, 'histograms')),
        ('Method', page.paragraph(
            'Chavez (1996): path reflectance = dark value - 0.01 Tz; surface reflectance = '
            '(TOA - path) / Tz, clipped at 0; Tz = 1 (DOS1) or cos(sun zenith) (COST).'))])
