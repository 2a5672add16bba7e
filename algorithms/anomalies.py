"""Processing glue: threshold a content raster and output ranked high-anomaly polygons."""
from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsPalLayerSettings,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsSingleSymbolRenderer,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsWkbTypes,
)

from ..core.anomalies import areas as core
from ..core.anomalies.fractal import concentration_area
from ..core.distributed import steps
from ..core.errors import InputError
from .glue import compat
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run

METHODS = ('Mean + k × SD', 'Median + k × MAD', 'Percentile', 'Concentration-area (C-A) fractal')
MEAN_SD, MEDIAN_MAD, PERCENTILE_METHOD, CONCENTRATION_AREA = range(4)


class AnomaliesAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'anomalies'
    DISPLAY_NAME = 'High-anomaly areas'
    GROUP_ID = 'anomalies'
    TAGS = ('anomaly', 'threshold', 'fractal', 'concentration-area', 'C-A', 'MAD', 'geochemistry',
            'polygons', 'prospecting')
    HELP = (
        'Finds the high-anomaly areas of a content raster (e.g. an inversion map of RE2O3 % or a fused '
        'Cu map) and outputs them as polygons ranked I, II, ... by mean content x area, as Cheng et '
        'al. (2023) delineated and graded high-anomaly areas of their inversion map.\n'
        'Threshold methods: mean + k x SD (Hawkes & Webb 1962); median + k x MAD with MAD scaled by '
        '1.4826 (robust, Reimann, Filzmoser & Garrett 2005); a percentile; or the concentration-area '
        '(C-A) fractal method of Cheng, Agterberg & Ballantyne (1994): log10 area(content >= c) '
        'against log10 c is fitted by 2 or 3 straight segments (exhaustive least-squares search); the '
        'concentrations where adjacent segments meet are the breakpoints and the highest one is the '
        'threshold. C-A uses the positive values only.\n'
        'Statistics are accumulated block by block: mean and SD are exact; median, MAD, percentiles '
        'and the C-A curve come from histograms of HISTOGRAM_BINS bins (linear over min..max, and '
        'log10 over the positive values) and are exact to one bin width.\n'
        'An optional exclusion MASK raster on the same grid (1 = keep, 0 = exclude; nodata = exclude), '
        'e.g. villages, buildings, water or vegetation from rsgeochem:surfacemask, removes pixels from '
        'both the statistics and the polygons (the paper names buildings as a source of false '
        'anomalies).\n'
        'Polygons: connected (4-neighbour) pixels with content >= threshold, polygonised with GDAL '
        '(holes kept); areas smaller than MIN_AREA are dropped. Fields: rank, rank_label (Roman), '
        'area (map units², use a projected CRS), mean, max, pixels, score = mean x area.\n'
        'Outputs: the polygons, THRESHOLD (the threshold used), BREAKPOINTS (all C-A breakpoints, '
        'comma-separated, empty for other methods), ANOMALY_COUNT, and an HTML report with the '
        'statistics, histogram, C-A plot (always drawn when the raster has positive values), a map and '
        'the ranked table.')

    INPUT = 'INPUT'
    BAND = 'BAND'
    METHOD = 'METHOD'
    K = 'K'
    PERCENTILE = 'PERCENTILE'
    CA_SEGMENTS = 'CA_SEGMENTS'
    MASK = 'MASK'
    MIN_AREA = 'MIN_AREA'
    HISTOGRAM_BINS = 'HISTOGRAM_BINS'
    OUTPUT = 'OUTPUT'
    OUTPUT_HTML = 'OUTPUT_HTML'
    THRESHOLD = 'THRESHOLD'
    BREAKPOINTS = 'BREAKPOINTS'
    ANOMALY_COUNT = 'ANOMALY_COUNT'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Content raster')),
                 'Raster of element content (e.g. the output of rsgeochem:applyinversionmodel or '
                 'rsgeochem:laplacianfusion); nodata pixels are ignored.')
        self.add(QgsProcessingParameterBand(self.BAND, self.tr('Band'), 1, self.INPUT, optional=True),
                 'Band holding the content (default 1).')
        self.add(QgsProcessingParameterEnum(self.METHOD, self.tr('Threshold method'), list(METHODS),
                                            defaultValue=CONCENTRATION_AREA),
                 'Mean + k x SD, median + k x MAD (robust), percentile, or the concentration-area '
                 'fractal method (highest breakpoint).')
        self.add(QgsProcessingParameterNumber(self.K, self.tr('k (for mean + k × SD, median + k × MAD)'),
                                              QgsProcessingParameterNumber.Type.Double, 2.0, False, 0.0,
                                              core.MAX_K),
                 'Multiplier of SD or MAD; 2 is the usual geochemical choice.')
        self.add(QgsProcessingParameterNumber(self.PERCENTILE, self.tr('Percentile (%)'),
                                              QgsProcessingParameterNumber.Type.Double, 95.0, False, 0.001,
                                              99.999),
                 'For the percentile method: pixels above this percentile of the valid values are '
                 'anomalous.')
        self.add(QgsProcessingParameterNumber(self.CA_SEGMENTS, self.tr('C-A segments'),
                                              QgsProcessingParameterNumber.Type.Integer, 3, False, 2, 3),
                 'Straight segments fitted to the log-log concentration-area curve: 2 (background, '
                 'anomaly) or 3 (low background, background, anomaly). The highest breakpoint is the '
                 'threshold.')
        self.add(QgsProcessingParameterRasterLayer(self.MASK, self.tr('Exclusion mask (1 keep, 0 exclude)'),
                                                   optional=True),
                 'Optional raster on the same grid as the content: 0 (or nodata) excludes a pixel from '
                 'the statistics and the polygons (villages, buildings, water, dense vegetation).')
        self.add(QgsProcessingParameterNumber(self.MIN_AREA, self.tr('Minimum area (map units²)'),
                                              QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
                 'Anomaly areas smaller than this are dropped (e.g. 10000 = 1 ha in a metric CRS).')
        self.add(QgsProcessingParameterNumber(self.HISTOGRAM_BINS, self.tr('Histogram bins'),
                                              QgsProcessingParameterNumber.Type.Integer, 10000, False, 100,
                                              1000000),
                 'Bins of the statistics histograms; median, MAD, percentiles and the C-A curve are '
                 'exact to (max - min) / bins.', advanced=True)
        self.add_block_memory()
        self.add(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr('High-anomaly areas'),
                                                   compat.SOURCE_POLYGONS),
                 'Polygons ranked I, II, ... by mean content x area with area, mean, max, pixel count; '
                 'loaded outlined in red and labelled with the rank.')
        self.add(QgsProcessingParameterFileDestination(self.OUTPUT_HTML, self.tr('Anomaly report'),
                                                       'HTML files (*.html)'),
                 'HTML report with statistics, histogram, C-A plot, map and ranked table.')
        self.addOutput(QgsProcessingOutputNumber(self.THRESHOLD, self.tr('Threshold used')))
        self.addOutput(QgsProcessingOutputString(self.BREAKPOINTS, self.tr('C-A breakpoints')))
        self.addOutput(QgsProcessingOutputNumber(self.ANOMALY_COUNT, self.tr('Number of anomaly areas')))

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        mask_layer = self.parameterAsRasterLayer(parameters, self.MASK, context)
        mask_path = raster_path(self, parameters, self.MASK, context) if mask_layer is not None else None
        method = self.parameterAsEnum(parameters, self.METHOD, context)
        min_area = self.parameterAsDouble(parameters, self.MIN_AREA, context)
        source = core.ValueSource(path, self.parameterAsInt(parameters, self.BAND, context), mask_path,
                                  self.block_memory(parameters, context))
        crs = self.parameterAsRasterLayer(parameters, self.INPUT, context).crs()
        if crs.isGeographic():
            feedback.pushWarning('The content raster has a geographic CRS: areas and MIN_AREA are in '
                                 'degrees²; reproject it for areas in m².')

        progress, cancel = progress_callbacks(feedback, 0, 50)
        bins = self.parameterAsInt(parameters, self.HISTOGRAM_BINS, context)
        run = cluster_run(feedback, progress, cancel)
        if run is not None:
            statistics = steps.anomaly_statistics(run, source, bins)
        else:
            statistics = core.raster_statistics(source, bins, progress, cancel)
        ca_result, ca_note = self.fit_concentration_area(parameters, context, statistics, method)
        threshold, method_text = self.threshold(parameters, context, statistics, method, ca_result)
        feedback.pushInfo(f'{method_text}: threshold {threshold:.6g}')

        progress, cancel = progress_callbacks(feedback, 50, 95)
        found = core.anomaly_polygons(source, threshold, min_area, progress, cancel)
        if not found:
            feedback.pushWarning(f'No area with content >= {threshold:.6g} of at least {min_area:g} '
                                 'map units²: the output layer is empty.')
        sink, sink_id = self.parameterAsSink(parameters, self.OUTPUT, context, output_fields(),
                                             QgsWkbTypes.Type.Polygon, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for anomaly in found:
            feature = QgsFeature(output_fields())
            geometry = QgsGeometry()
            geometry.fromWkb(anomaly.wkb)
            feature.setGeometry(geometry)
            feature.setAttributes([anomaly.rank, anomaly.label, anomaly.area, anomaly.mean,
                                   anomaly.maximum, anomaly.pixels, anomaly.score])
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        del sink  # closes (commits) a file output now, not when the garbage collector runs
        name_output_layer(context, sink_id, f'High-anomaly areas ({method_text}, >= {threshold:.4g})',
                          AnomalyStyle.create())

        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        core.write_anomaly_report(html_path, source, statistics, method_text, threshold, found, min_area,
                                  ca_result, ca_note)
        breakpoints = ','.join(f'{value:.6g}' for value in ca_result.breakpoints) \
            if method == CONCENTRATION_AREA else ''
        feedback.setProgress(100)
        return {self.OUTPUT: sink_id, self.OUTPUT_HTML: html_path, self.THRESHOLD: threshold,
                self.BREAKPOINTS: breakpoints, self.ANOMALY_COUNT: len(found)}

    def fit_concentration_area(self, parameters, context, statistics, method):
        """C-A fit (needed for the C-A method, drawn in the report for every method)."""
        if statistics.log_counts is None:
            note = 'No positive values: no concentration-area curve.'
            if method == CONCENTRATION_AREA:
                raise InputError(note + ' Use another threshold method.', self.INPUT)
            return None, note
        try:
            return concentration_area(statistics.log_edges, statistics.log_counts, statistics.pixel_area,
                                      self.parameterAsInt(parameters, self.CA_SEGMENTS, context),
                                      self.METHOD), ''
        except InputError as error:
            if method == CONCENTRATION_AREA:
                raise
            return None, str(error)

    def threshold(self, parameters, context, statistics, method, ca_result):
        """(threshold, description) of the chosen method."""
        k = self.parameterAsDouble(parameters, self.K, context)
        if method == MEAN_SD:
            return core.mean_sd_threshold(statistics, k, self.K), f'mean + {k:g} SD'
        if method == MEDIAN_MAD:
            return core.median_mad_threshold(statistics, k, self.K), f'median + {k:g} MAD'
        if method == PERCENTILE_METHOD:
            percent = self.parameterAsDouble(parameters, self.PERCENTILE, context)
            threshold = core.percentile_threshold(statistics, percent, self.PERCENTILE)
            return threshold, f'{percent:g}th percentile'
        return ca_result.threshold, f'concentration-area fractal, {len(ca_result.segments)} segments'


def output_fields():
    fields = QgsFields()
    for name, kind in (('rank', compat.FIELD_INT), ('rank_label', compat.FIELD_STRING),
                       ('area', compat.FIELD_DOUBLE), ('mean', compat.FIELD_DOUBLE),
                       ('max', compat.FIELD_DOUBLE), ('pixels', compat.FIELD_INT),
                       ('score', compat.FIELD_DOUBLE)):
        fields.append(QgsField(name, kind))
    return fields


class AnomalyStyle(QgsProcessingLayerPostProcessorInterface):
    """Style of the loaded anomaly layer, as anomalies are drawn on a prospecting map: red outline
    over a light red fill that leaves the content map visible, labelled with the rank I, II, ..."""

    # Processing holds only a C++ pointer: each run's instance is kept here, or Python deletes it
    # before the layer is loaded (a class attribute holding only the last one would fail two runs
    # finishing together, e.g. in batch mode; the objects are tiny)
    instances = []

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        if not isinstance(layer, QgsVectorLayer):
            return
        layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
            {'color': '227,26,28,50', 'outline_color': '227,26,28,255', 'outline_width': '0.6'})))
        labels = QgsPalLayerSettings()
        labels.fieldName = 'rank_label'
        labels.placement = compat.LABEL_OVER_POINT
        text = QgsTextFormat()
        text.setSize(10)
        text.buffer().setEnabled(True)
        labels.setFormat(text)
        layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
        layer.setLabelsEnabled(True)
        layer.triggerRepaint()

    @staticmethod
    def create():
        AnomalyStyle.instances.append(AnomalyStyle())
        return AnomalyStyle.instances[-1]
