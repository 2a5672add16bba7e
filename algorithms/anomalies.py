"""Processing glue: threshold a content raster and output ranked high-anomaly polygons."""
from pathlib import Path

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)

from ..core.anomalies import areas as core
from ..core.anomalies.fractal import concentration_area
from ..core.anomalies.smoothing import focal_mean
from ..core.distributed import steps
from ..core.errors import InputError
from ..core.raster.scratch import scratch_folder
from .glue import compat, styles
from .glue.base import RsGeochemAlgorithm, name_output_layer, progress_callbacks, raster_path
from .glue.cluster import cluster_run

METHODS = ('Mean + k × SD', 'Median + k × MAD', 'Percentile', 'Concentration-area (C-A) fractal',
           'Fixed value')
MEAN_SD, MEDIAN_MAD, PERCENTILE_METHOD, CONCENTRATION_AREA, FIXED_VALUE = range(5)
DEFAULT_SMOOTHING = 5   # pixels: a 5 x 5 focal mean (50 m on a 10 m image, 20 m on GF-2's 4 m)
DEFAULT_MAX_AREAS = 10  # a target list to follow up in the field, highest-ranked first
MAX_SMOOTHING = 101


class AnomaliesAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'anomalies'
    DISPLAY_NAME = 'High-anomaly areas'
    GROUP_ID = 'anomalies'
    TAGS = ('anomaly', 'threshold', 'fractal', 'concentration-area', 'C-A', 'MAD', 'geochemistry',
            'polygons', 'prospecting', 'targets')
    HELP = (
        'Outlines the high-anomaly areas of a content map as polygons ranked I, II, ... by mean content '
        '× area: the prospecting targets, as Cheng et al. (2023) outlined and graded the high-anomaly '
        'areas of their RE2O3 map.\n'
        'Use it on a content map: the output of "Apply inversion model", "Laplacian pyramid fusion" or '
        '"Kriging". Give the Content raster; add an Exclusion mask (e.g. from "Surface mask": villages, '
        'buildings, water and vegetation give false anomalies). The defaults suit most maps: the map is '
        'smoothed by a 5 × 5 pixel mean, the threshold is its 95th percentile (the top 5 % of the mapped '
        'area, whatever the shape of the distribution), areas no larger than the smoothing window (which '
        'one pixel can make) are dropped and the 10 highest-ranked areas are kept. Thresholds from the '
        'distribution depend on its shape: median + 2 MAD lies above every pixel of a map with two broad '
        'populations (no area on the sample data\'s fused Cu map), mean + 2 SD above the tail of a map '
        'skewed to low values; the concentration-area (C-A) fractal method finds a threshold where the map '
        'holds distinct populations, i.e. where its C-A plot (in the report whatever the method) bends '
        'sharply, but on a map without such a bend its breakpoints fall at the bulk of the values or among '
        'the last few pixels, depending on small changes of the map. For a '
        'threshold known from the literature choose Threshold method "Fixed value" and set Fixed '
        'threshold (Cheng et al. 2023 outlined RE2O3 ≥ 0.065 %).\n'
        'Outputs: the ranked polygons (fields rank, rank_label, area in map units², mean and max '
        'content, pixels, score = mean × area; loaded outlined in red and labelled with the rank), an '
        'HTML report (statistics, histogram, C-A plot, map, ranked table), the Threshold used, the C-A '
        'breakpoints and the Number of anomaly areas.\n'
        'Method details. Smoothing: the mean over a square Smoothing window (pixels, odd); a pixel whose '
        'window crosses the raster edge, nodata or masked pixels gets no value, which trims the edges '
        'and shores where mixed pixels and processing artefacts make false anomalies, and removes the '
        'single-pixel spikes of a kriged map at its samples. The threshold and the polygons come from '
        'the smoothed map; mean and max in the table are those of the unsmoothed content. Thresholds: '
        'mean + k × SD (Hawkes & Webb 1962); median + k × MAD, MAD scaled by 1.4826 (Reimann, Filzmoser '
        '& Garrett 2005); a percentile; a fixed value in the content\'s units; or the concentration-area '
        'fractal method of Cheng, Agterberg & Ballantyne (1994): log10 area(content ≥ c) against log10 c '
        'is fitted by 2 or 3 straight segments (exhaustive least squares) and the highest breakpoint is '
        'the threshold (positive values only). Statistics are accumulated block by block: mean and SD '
        'exactly, median, MAD, percentiles and the C-A curve from histograms of Histogram bins bins '
        '(exact to one bin width). Polygons: 4-connected pixels at or above the threshold, polygonised '
        'with GDAL (holes kept); areas smaller than Minimum area are dropped.')

    INPUT = 'INPUT'
    BAND = 'BAND'
    METHOD = 'METHOD'
    K = 'K'
    PERCENTILE = 'PERCENTILE'
    CA_SEGMENTS = 'CA_SEGMENTS'
    MASK = 'MASK'
    MIN_AREA = 'MIN_AREA'
    MAX_AREAS = 'MAX_AREAS'
    HISTOGRAM_BINS = 'HISTOGRAM_BINS'
    OUTPUT = 'OUTPUT'
    OUTPUT_HTML = 'OUTPUT_HTML'
    THRESHOLD = 'THRESHOLD'
    BREAKPOINTS = 'BREAKPOINTS'
    ANOMALY_COUNT = 'ANOMALY_COUNT'
    FIXED_THRESHOLD = 'FIXED_THRESHOLD'
    SMOOTHING = 'SMOOTHING'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Content raster')),
                 'Map of element content, e.g. from "Apply inversion model", "Laplacian pyramid fusion" or '
                 '"Kriging"; nodata pixels are ignored.')
        self.add(QgsProcessingParameterBand(self.BAND, self.tr('Band'), 1, self.INPUT, optional=True),
                 'Band holding the content (default 1).')
        self.add(QgsProcessingParameterEnum(self.METHOD, self.tr('Threshold method'), list(METHODS),
                                            defaultValue=PERCENTILE_METHOD),
                 'How the threshold is set: mean + k × SD, median + k × MAD (robust to outliers), a '
                 'percentile (default: the 95th, the top 5 % of the map whatever the shape of its '
                 'distribution), the concentration-area fractal method (the highest breakpoint of the C-A '
                 'curve; for maps whose C-A plot bends sharply) or a fixed value (Fixed threshold).')
        self.add(QgsProcessingParameterNumber(self.K, self.tr('k (for mean + k × SD, median + k × MAD)'),
                                              QgsProcessingParameterNumber.Type.Double, 2.0, False, 0.0,
                                              core.MAX_K),
                 'Multiplier of SD or MAD; 2 is the usual geochemical choice.')
        self.add(QgsProcessingParameterNumber(self.PERCENTILE, self.tr('Percentile (%)'),
                                              QgsProcessingParameterNumber.Type.Double, 95.0, False, 0.001,
                                              99.999),
                 'For the percentile method: pixels above this percentile of the valid values are '
                 'anomalous.')
        self.add(QgsProcessingParameterNumber(self.FIXED_THRESHOLD,
                                              self.tr('Fixed threshold (content units)'),
                                              QgsProcessingParameterNumber.Type.Double, 0.065),
                 'For the fixed-value method: content at or above this value is anomalous, in the units of '
                 'the Content raster (Cheng et al. 2023: RE2O3 ≥ 0.065 %). It applies to the smoothed map.')
        self.add(QgsProcessingParameterNumber(self.CA_SEGMENTS, self.tr('C-A segments'),
                                              QgsProcessingParameterNumber.Type.Integer, 3, False, 2, 3),
                 'Straight segments fitted to the log-log concentration-area curve: 2 (background, '
                 'anomaly) or 3 (low background, background, anomaly). The highest breakpoint is the '
                 'threshold.')
        self.add(QgsProcessingParameterRasterLayer(self.MASK, self.tr('Exclusion mask (1 keep, 0 exclude)'),
                                                   optional=True),
                 'Optional raster on the same grid as the content, e.g. from "Surface mask": 0 (or nodata) '
                 'leaves a pixel out of the statistics and the polygons (villages, buildings, water, dense '
                 'vegetation).')
        self.add(QgsProcessingParameterNumber(self.SMOOTHING,
                                              self.tr('Smoothing window (pixels, odd; 1 = none)'),
                                              QgsProcessingParameterNumber.Type.Integer, DEFAULT_SMOOTHING,
                                              False, 1, MAX_SMOOTHING),
                 'The map is averaged over a square of this many pixels a side before thresholding, so '
                 'areas are at least about this wide and pixel noise or the spikes of a kriged map at its '
                 'samples do not make anomalies; pixels whose window crosses the raster edge, nodata or '
                 'the mask are left out. 1 thresholds the map as it is.')
        self.add(QgsProcessingParameterNumber(self.MIN_AREA, self.tr('Minimum area (map units², 0 = larger '
                                                                     'than the smoothing window)'),
                                              QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
                 'Anomaly areas smaller than this are dropped (e.g. 10000 = 1 ha in a metric CRS). 0 keeps '
                 'the areas larger than the smoothing window (26 pixels or more for a 5-pixel window, 2 or '
                 'more without smoothing): smaller ones can come from a single pixel, e.g. one sample of a '
                 'kriged map.')
        self.add(QgsProcessingParameterNumber(self.MAX_AREAS, self.tr('Most areas kept (0 = all)'),
                                              QgsProcessingParameterNumber.Type.Integer, DEFAULT_MAX_AREAS,
                                              False, 0),
                 'Only the highest-ranked areas (by mean content × area) are kept, a list of prospecting '
                 'targets to follow up; the log and the report say how many more were above the threshold. '
                 'A map with pixel-scale detail (e.g. predicted from the spectra pixel by pixel) breaks into '
                 'many small areas above any threshold. 0 keeps every area.')
        self.add(QgsProcessingParameterNumber(self.HISTOGRAM_BINS, self.tr('Histogram bins'),
                                              QgsProcessingParameterNumber.Type.Integer, 10000, False, 100,
                                              1000000),
                 'Bins of the statistics histograms; median, MAD, percentiles and the C-A curve are '
                 'exact to (max - min) / bins.', advanced=True)
        self.add_block_memory()
        self.add(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr('High-anomaly areas'),
                                                   compat.SOURCE_POLYGONS),
                 'Polygons ranked I, II, ... by mean content × area with area, mean, max, pixel count; '
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
        window = self.parameterAsInt(parameters, self.SMOOTHING, context)
        if window % 2 == 0:
            raise InputError(f'the smoothing window must be an odd number of pixels (1, 3, 5, ...), not '
                             f'{window}.', self.SMOOTHING)
        band = self.parameterAsInt(parameters, self.BAND, context)
        content = core.ValueSource(path, band, mask_path, self.block_memory(parameters, context))
        # one pixel spreads over window² pixels of the smoothed map: an area must be larger
        min_area = self.parameterAsDouble(parameters, self.MIN_AREA, context) or \
            (window * window + 1) * content.pixel_area
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        crs = layer.crs()
        if crs.isGeographic():
            feedback.pushWarning('The content raster has a geographic CRS: areas and the minimum area are '
                                 'in degrees²; reproject it for areas in m².')
        with scratch_folder('rsgeochem-smoothing') as work:
            source, smoothing_note = self.smoothed(content, window, Path(work), feedback)
            progress, cancel = progress_callbacks(feedback, 20, 50)
            bins = self.parameterAsInt(parameters, self.HISTOGRAM_BINS, context)
            # the smoothed map is a local temporary file the cluster's workers cannot read
            run = cluster_run(feedback, progress, cancel) if window == 1 else None
            if run is not None:
                statistics = steps.anomaly_statistics(run, source, bins)
            else:
                statistics = core.raster_statistics(source, bins, progress, cancel)
            ca_result, ca_note = self.fit_concentration_area(parameters, context, statistics, method)
            threshold, method_text = self.threshold(parameters, context, statistics, method, ca_result)
            feedback.pushInfo(f'{method_text}: threshold {threshold:.6g}')

            progress, cancel = progress_callbacks(feedback, 50, 95)
            most = self.parameterAsInt(parameters, self.MAX_AREAS, context)
            found, above = core.ranked_areas(source, threshold, min_area, most, progress, cancel, content)
        if most and above > most:
            feedback.pushInfo(f'{above} areas above the threshold: the {most} highest-ranked are kept '
                              f'({self.MAX_AREAS}).')
        if not found:
            feedback.pushWarning(f'No area with {smoothing_note or "content"} ≥ {threshold:.6g} of at least '
                                 f'{min_area:g} map units²: the output layer is empty.')
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
        units = styles.units_in(content.info.descriptions[band - 1])
        name_output_layer(context, sink_id, f'High-anomaly areas ({method_text} ≥ {threshold:.4g}'
                          f'{" " + units if units else ""})', styles.anomaly_areas())

        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        core.write_anomaly_report(html_path, content, statistics, method_text, threshold, found, min_area,
                                  ca_result, ca_note, smoothing_note, above)
        breakpoints = ','.join(f'{value:.6g}' for value in ca_result.breakpoints) \
            if method == CONCENTRATION_AREA else ''
        feedback.setProgress(100)
        return {self.OUTPUT: sink_id, self.OUTPUT_HTML: html_path, self.THRESHOLD: threshold,
                self.BREAKPOINTS: breakpoints, self.ANOMALY_COUNT: len(found)}

    def smoothed(self, content, window, folder, feedback):
        """(ValueSource to threshold, its description for the log and report): the focal mean of
        `content` written into `folder`, or `content` itself for a 1-pixel window."""
        if window == 1:
            return content, ''
        progress, cancel = progress_callbacks(feedback, 0, 20)
        source, count = focal_mean(content, window, folder / 'smoothed.tif', progress, cancel)
        if count == 0:
            raise InputError(f'no pixel has a complete {window} × {window} window of valid pixels (the '
                             'raster is too small or too fragmented by nodata and the mask); choose a '
                             'smaller smoothing window, or 1.', self.SMOOTHING)
        note = f'content smoothed by a {window} × {window} pixel mean'
        feedback.pushInfo(f'{note}: {count} pixels have a complete window (pixels within {window // 2} of '
                          'the raster edge, nodata or masked pixels are left out).')
        return source, note

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
        if method == FIXED_VALUE:
            return self.parameterAsDouble(parameters, self.FIXED_THRESHOLD, context), 'fixed value'
        return ca_result.threshold, f'C-A fractal, {len(ca_result.segments)} segments'


def output_fields():
    fields = QgsFields()
    for name, kind in (('rank', compat.FIELD_INT), ('rank_label', compat.FIELD_STRING),
                       ('area', compat.FIELD_DOUBLE), ('mean', compat.FIELD_DOUBLE),
                       ('max', compat.FIELD_DOUBLE), ('pixels', compat.FIELD_INT),
                       ('score', compat.FIELD_DOUBLE)):
        fields.append(QgsField(name, kind))
    return fields
