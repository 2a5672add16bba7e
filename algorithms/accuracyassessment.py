"""Processing glue: accuracy of a predicted raster against measured values at sample points."""
import math

import numpy as np
from qgis.core import (
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)

from ..core.errors import InputError
from ..core.metrics import regression_metrics
from ..core.raster.blockio import raster_info
from ..core.raster.pointvalues import sample_points
from ..core.report import page
from .glue import compat
from .glue.base import RsGeochemAlgorithm, name_output_layer, raster_path
from .glue.vectors import read_points

MIN_POINTS = 3
METRIC_OUTPUTS = (  # output key, RegressionMetrics attribute, description
    ('R2', 'r2', 'Coefficient of determination R² (1 - SSres/SStot)'),
    ('RMSE', 'rmse', 'Root-mean-square error (target units)'),
    ('RPD', 'rpd', 'Ratio of performance to deviation, SD(measured)/RMSE'),
    ('RPIQ', 'rpiq', 'Ratio of performance to interquartile distance, IQR(measured)/RMSE'),
    ('BIAS', 'bias', 'Bias, mean(predicted - measured) (target units)'),
)


class AccuracyAssessmentAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'accuracyassessment'
    DISPLAY_NAME = 'Accuracy assessment of a predicted map'
    GROUP_ID = 'inversion'
    TAGS = ('accuracy', 'validation', 'r2', 'rmse', 'rpd', 'rpiq', 'bias', 'spearman', 'residuals')
    HELP = (
        'Checks a predicted map against values measured at sample points: R², RMSE, RPD, RPIQ, bias and '
        'Spearman\'s rank correlation, with a measured-against-predicted plot, as Cheng et al. (2023) '
        'assessed their RE2O3 map.\n'
        'Use it on a map from "Apply inversion model" or "Laplacian pyramid fusion", with samples that '
        'were not used to make it (a check or validation survey). Give the Predicted raster, the Measured '
        'points and their Measured value field (in the units of the map).\n'
        'Outputs: the metrics as numbers (usable in a model), an HTML report (metrics, points left out, '
        'scatter plot with the 1:1 line) and, optionally, the Points with residuals (measured, predicted, '
        'residual = predicted - measured).\n'
        'Method details. Each point takes the value of the pixel that holds it (no interpolation); points '
        'outside the raster, on a nodata pixel or with a NULL measured value are left out and counted in '
        'the log and the report; points are reprojected to the raster\'s CRS when needed. Metrics (the same '
        'code as "Train inversion model"): R² = 1 - SSres/SStot; RMSE; RPD = SD(measured)/RMSE (Williams '
        '1987; Chang et al. 2001 read above 2 as good, 1.4-2 as fair, below 1.4 as poor; Cheng et al. 2023 '
        'take R² ≥ 0.9 with RPD ≥ 3 as a good model); RPIQ = IQR(measured)/RMSE (Bellon-Maurel et al. '
        '2010); bias = mean(predicted - measured); Spearman\'s rho with its p-value '
        '(scipy.stats.spearmanr).')

    INPUT = 'INPUT'
    BAND = 'BAND'
    POINTS = 'POINTS'
    FIELD = 'FIELD'
    OUTPUT = 'OUTPUT'
    OUTPUT_HTML = 'OUTPUT_HTML'
    SPEARMAN = 'SPEARMAN'
    N = 'N'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterRasterLayer(self.INPUT, self.tr('Predicted raster')),
                 'Raster of predicted values, e.g. the output of "Apply inversion model".')
        self.add(QgsProcessingParameterBand(self.BAND, self.tr('Band'), 1, self.INPUT, optional=True),
                 'Band of the predicted raster to assess (default 1).')
        self.add(QgsProcessingParameterFeatureSource(
            self.POINTS, self.tr('Measured points'), [compat.SOURCE_POINTS]),
            'Point layer of samples with measured values (e.g. chemical analyses not used for training).')
        self.add(QgsProcessingParameterField(
            self.FIELD, self.tr('Measured value field'), parentLayerParameterName=self.POINTS,
            type=QgsProcessingParameterField.DataType.Numeric),
            'Numeric field with the measured value, in the units of the predicted raster.')
        self.add(QgsProcessingParameterFeatureSink(
            self.OUTPUT, self.tr('Points with residuals'), compat.SOURCE_POINTS, optional=True,
            createByDefault=False),
            'Optional copy of the points with the fields measured, predicted and residual (predicted - '
            'measured); predicted and residual are NULL where the point was left out.')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Accuracy report'), 'HTML files (*.html)'),
            'HTML report: metrics, counts of points left out, measured-vs-predicted scatter plot with '
            'the 1:1 line.')
        for key, _, description in METRIC_OUTPUTS:
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))
        self.addOutput(QgsProcessingOutputNumber(self.SPEARMAN, self.tr('Spearman rank correlation rho')))
        self.addOutput(QgsProcessingOutputNumber(self.N, self.tr('Number of points assessed')))

    def execute(self, parameters, context, feedback):
        path = raster_path(self, parameters, self.INPUT, context)
        band = self.parameterAsInt(parameters, self.BAND, context) or 1
        info = raster_info(path, self.INPUT)
        source = self.parameterAsSource(parameters, self.POINTS, context)
        field = (compat.parameter_as_strings(self, parameters, self.FIELD, context) or [''])[0]
        samples = read_points(source, [field], self.POINTS, context, feedback,
                              target_crs=info.grid.crs_wkt or None)
        sampled = sample_points(path, samples.x, samples.y, [band], self.BAND)
        valid = sampled.valid
        measured, predicted = samples.values[field][valid], sampled.values[valid, 0]
        skipped = dict(samples.skipped, **{'outside the raster': sampled.outside_count,
                                           'on nodata pixels': sampled.nodata_count})
        skipped_text = ', '.join(f'{count} {reason}' for reason, count in skipped.items() if count)
        if skipped_text:
            feedback.pushWarning(f'Points left out: {skipped_text}.')
        check_measured(measured, len(samples), skipped_text)
        metrics = regression_metrics(measured, predicted)
        rho, p_value = spearman(measured, predicted, feedback)
        shared = np.count_nonzero(valid) - len(set(zip(sampled.rows[valid], sampled.cols[valid])))

        results = {key: getattr(metrics, name) for key, name, _ in METRIC_OUTPUTS}
        results.update({self.SPEARMAN: rho, self.N: metrics.n})
        feedback.pushInfo(', '.join(f'{key} {value:.4g}' for key, value in results.items()))
        if self.parameterAsOutputLayer(parameters, self.OUTPUT, context):
            results[self.OUTPUT] = self.write_points(parameters, context, source, samples, sampled, field)
            name_output_layer(context, results[self.OUTPUT], f'Residuals of predicted {field}')
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        notes = f'Raster {path}, band {band}; measured field "{field}". Points left out: ' \
                f'{skipped_text or "none"}.'
        if shared:
            notes += f' {shared} assessed points share a pixel with another assessed point.'
        write_accuracy_report(html_path, field, metrics, rho, p_value, measured, predicted, notes)
        results[self.OUTPUT_HTML] = html_path
        return results

    def write_points(self, parameters, context, source, samples, sampled, field):
        """Copy of the usable points with measured, predicted and residual fields."""
        added = QgsFields()
        for name in ('measured', 'predicted', 'residual'):
            added.append(QgsField(name, compat.FIELD_DOUBLE))
        fields = QgsProcessingUtils.combineFields(source.fields(), added)
        sink, sink_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, source.wkbType(),
                                             source.sourceCrs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        by_id = {int(fid): index for index, fid in enumerate(samples.feature_ids)}
        request = QgsFeatureRequest().setFilterFids(list(by_id))
        for feature in source.getFeatures(request):
            index = by_id[feature.id()]
            measured = float(samples.values[field][index])
            predicted = float(sampled.values[index, 0])
            extra = [measured, None, None] if math.isnan(predicted) else \
                [measured, predicted, predicted - measured]
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            out.setAttributes(feature.attributes() + extra)
            sink.addFeature(out, QgsFeatureSink.Flag.FastInsert)
        del sink  # closes the layer before QGIS loads it
        return sink_id


def check_measured(measured, total, skipped_text):
    if measured.size < MIN_POINTS:
        raise InputError(
            f'only {measured.size} of {total} points have a measured value on a valid pixel '
            f'({skipped_text or "none left out"}); at least {MIN_POINTS} are needed. Check that the '
            'points overlap the raster and that their CRS is set correctly.', 'POINTS')
    if np.ptp(measured) == 0:
        raise InputError(
            f'every assessed point has the same measured value ({measured[0]:g}), so R², RPD '
            'and correlations are undefined; choose the field with the measured content.', 'FIELD')


def spearman(measured, predicted, feedback):
    """Spearman's rho and two-sided p-value (scipy); NaN with a warning for a constant prediction."""
    if np.ptp(predicted) == 0:
        feedback.pushWarning('The prediction is constant at every point: Spearman\'s rho is undefined.')
        return math.nan, math.nan
    from scipy import stats  # imported when used: ~0.2 CPU s at every plugin load otherwise
    result = stats.spearmanr(measured, predicted)
    return float(result.correlation), float(result.pvalue)


def write_accuracy_report(path, field, metrics, rho, p_value, measured, predicted, notes):
    rows = [('n (points assessed)', metrics.n), ('R²', metrics.r2), ('RMSE', metrics.rmse),
            ('RPD', metrics.rpd), ('RPIQ', metrics.rpiq), ('Bias (predicted - measured)', metrics.bias),
            ('Spearman rho', rho), ('Spearman p-value', p_value)]
    sections = [('Metrics', page.table_html(['metric', 'value'], rows) + page.paragraph(notes, 'note')),
                ('Measured vs predicted', scatter_plot(measured, predicted, field))]
    page.write_report(path, f'Accuracy assessment: {field}', sections)


def scatter_plot(measured, predicted, field):
    figure, axes = page.new_figure(5.5, 5.0)
    axes.scatter(measured, predicted, s=14, alpha=0.7, edgecolors='none')
    low = float(min(measured.min(), predicted.min()))
    high = float(max(measured.max(), predicted.max()))
    axes.plot([low, high], [low, high], color='k', linewidth=1, label='1:1')
    axes.set_xlabel(f'measured {field}')
    axes.set_ylabel(f'predicted {field}')
    axes.set_aspect('equal', adjustable='datalim')
    axes.legend(loc='upper left')
    return page.figure_html(figure, 'measured vs predicted with the 1:1 line')
