"""Processing glue: two maps on one grid compared pixel by pixel (r, R², RMSE, bias, difference map)."""
from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.inversion.mapcomparison import compare_maps, write_comparison_report
from ..core.raster.blockio import raster_info
from .glue import styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.mask_input import add_mask_parameter, mask_reader

METRIC_OUTPUTS = (  # output key, MapComparison attribute, description
    ('R', 'r', 'Pearson correlation r of the two maps'),
    ('R2', 'r2', 'Coefficient of determination R² = 1 - SSres/SStot (reference as the truth)'),
    ('RMSE', 'rmse', 'Root-mean-square difference (map units)'),
    ('BIAS', 'bias', 'Bias, mean(map - reference) (map units)'),
    ('N', 'n', 'Pixels compared'),
)


class CompareMapsAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'comparemaps'
    DISPLAY_NAME = 'Compare two maps'
    GROUP_ID = 'inversion'
    TAGS = ('compare', 'difference', 'map', 'kriging', 'validation', 'r2', 'rmse', 'bias', 'correlation')
    HELP = (
        'Compares a map with a reference map on the same grid, pixel by pixel: r, R², RMSE and bias, a '
        'difference map and the two maps side by side - the map-to-map check of Cheng et al. (2023, Fig. '
        '10), who kriged the contents their model predicted at the samples and compared that map with the '
        'kriged measured contents.\n'
        'Use it to check a predicted map against the kriged survey (as the rare-earth inversion workflow '
        'does), or to compare any two content maps on one grid (two models, two dates, a fused map against '
        'a finer survey kriged on the image grid). Give the Map and the Reference map (taken as the '
        'truth), both on the same grid: krige both onto the same Reference raster of "Kriging", or align '
        'one with GDAL Warp; optionally a Mask raster and the Units of the maps.\n'
        'Outputs: the Difference map (map - reference, loaded with a blue-white-red ramp centred on 0), an '
        'HTML report (statistics, the two maps side by side on one colour scale, the difference map and a '
        'scatter plot of the pixels with the 1:1 line) and the statistics as numbers.\n'
        'Method details. Only pixels with data in both maps (and kept by the mask) count; pixels with data '
        'in one map only are counted in the log and the report. Statistics, with the reference as the '
        'truth: Pearson r; R² = 1 - sum((map - reference)²) / sum((reference - mean reference)²) (it can '
        'be negative: the map is then worse than the reference\'s mean); RMSE; bias = mean(map - '
        'reference), in the maps\' units. The maps are read and the difference written in blocks of rows, '
        'so memory does not grow with the raster size.')

    INPUT = 'INPUT'
    BAND = 'BAND'
    REFERENCE = 'REFERENCE'
    REFERENCE_BAND = 'REFERENCE_BAND'
    MASK = 'MASK'
    UNITS = 'UNITS'
    OUTPUT = 'OUTPUT'
    OUTPUT_HTML = 'OUTPUT_HTML'

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Map')),
                 'The map to check, e.g. the kriged contents predicted at the samples.')
        self.add(QgsProcessingParameterBand(self.BAND, self.tr('Band of the map'), 1, self.INPUT,
                                            optional=True),
                 'Band of the map (default 1).')
        self.add(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr('Reference map')),
                 'The map taken as the truth, on the same grid, e.g. the kriged measured contents.')
        self.add(QgsProcessingParameterBand(self.REFERENCE_BAND, self.tr('Band of the reference'), 1,
                                            self.REFERENCE, optional=True),
                 'Band of the reference map (default 1).')
        add_mask_parameter(self, self.MASK)
        self.add(QgsProcessingParameterString(self.UNITS, self.tr('Units of the maps'), '', optional=True),
                 'Units shown in the report (e.g. % RE2O3); both maps must be in the same units.')
        self.add_block_memory()
        self.add(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr('Difference map')),
                 'Float32 GeoTIFF of map - reference on the maps\' grid, nodata where either has none.')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Comparison report'), 'HTML files (*.html)'),
            'HTML report: statistics, the maps side by side, the difference map and the pixel scatter plot.')
        for key, _, description in METRIC_OUTPUTS:
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        reference = raster_path(self, parameters, self.REFERENCE, context)
        bands = (self.parameterAsInt(parameters, self.BAND, context) or 1,
                 self.parameterAsInt(parameters, self.REFERENCE_BAND, context) or 1)
        mask = mask_reader(self, parameters, self.MASK, context, raster_info(path, self.INPUT).grid, feedback)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        progress, cancel = progress_callbacks(feedback, 0, 90)
        keys = (self.INPUT, self.BAND, self.REFERENCE, self.REFERENCE_BAND)
        comparison = compare_maps(path, reference, output, *bands, mask=mask,
                                  memory_mb=self.block_memory(parameters, context), progress=progress,
                                  cancel=cancel, keys=keys)
        results = {key: getattr(comparison, name) for key, name, _ in METRIC_OUTPUTS}
        feedback.pushInfo(', '.join(f'{key} {value:.4g}' for key, value in results.items()))
        if comparison.skipped:
            feedback.pushWarning(f'{comparison.skipped} pixels hold data in one map only and were left out.')
        names = tuple(styles.layer_label(self.parameterAsRasterLayer(parameters, key, context), fallback)
                      for key, fallback in ((self.INPUT, 'map'), (self.REFERENCE, 'reference')))
        if names[0] == names[1]:
            names = ('map', 'reference')
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        write_comparison_report(html, comparison, (path, reference, output), bands, names,
                                self.parameterAsString(parameters, self.UNITS, context))
        feedback.setProgress(100)
        units = self.parameterAsString(parameters, self.UNITS, context)
        name = f'Difference {names[0]} - {names[1]}' + (f' ({units})' if units else '')
        name_output_layer(context, output, name, styles.difference(units))
        results.update({self.OUTPUT: output, self.OUTPUT_HTML: html})
        return results
