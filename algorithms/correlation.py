"""Processing glue: Spearman/Pearson correlation of a target field with each feature field."""
import math

import numpy as np
from qgis.core import (
    QgsFeatureRequest,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core.errors import CancelledError
from ..core.inversion.correlation import METHODS, MISSING_MODES, correlate
from ..core.report import page
from .glue import compat
from .glue.base import RsGeochemAlgorithm
from .glue.fields import target_and_features
from .glue.tables import table_fields, write_table

METHOD_CHOICES = ((('spearman',), 'Spearman rank correlation (rho)'),
                  (('pearson',), 'Pearson linear correlation (r)'),
                  (METHODS, 'Both'))


class CorrelationAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'correlation'
    DISPLAY_NAME = 'Correlation of a field with features'
    GROUP_ID = 'inversion'
    TAGS = ('spearman', 'pearson', 'correlation', 'feature selection', 'fdr', 'benjamini-hochberg')
    HELP = (
        'Correlates the content of a sample set with each band (or any other feature field) to show which '
        'bands an inversion model should use, as Cheng et al. (2023) did with Spearman\'s rank correlation.\n'
        'Use it on the output of "Surface-to-surface sample set" before "Train inversion model". Give the '
        'Samples (layer or table), the Target field (e.g. the kriged content) and the Feature fields (e.g. '
        'the band values; empty = every other numeric field).\n'
        'Outputs: the Correlation table (one row per feature and method: n, coefficient, p-value, adjusted '
        'p-value, significant) and an HTML report with a bar chart of the coefficients (significant ones '
        'marked with *).\n'
        'Method details. Spearman (rank, suited to skewed contents; the paper\'s choice), Pearson, or both; '
        'two-sided p-values from scipy.stats. The p-values are adjusted for testing many features at once '
        'by the Benjamini-Hochberg (1995) false discovery rate procedure (one family per method); a '
        'feature is significant when its adjusted p-value is at most the Significance level (alpha). NULL '
        'values: pairwise by default (each feature uses the samples where it and the target are present, '
        'so n can differ) or listwise. A constant feature or fewer than 3 usable samples gives an empty '
        'row with a note; a constant target is an error.')

    INPUT = 'INPUT'
    TARGET = 'TARGET'
    FEATURES = 'FEATURES'
    METHOD = 'METHOD'
    MISSING = 'MISSING'
    ALPHA = 'ALPHA'
    OUTPUT = 'OUTPUT'
    OUTPUT_HTML = 'OUTPUT_HTML'

    def initAlgorithm(self, config=None):
        self.add(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr('Samples (layer or table)'), [compat.SOURCE_TABLE]),
            'Layer or table holding the target and feature fields, e.g. the output of '
            '"Surface-to-surface sample set".')
        self.add(QgsProcessingParameterField(
            self.TARGET, self.tr('Target field'), parentLayerParameterName=self.INPUT,
            type=QgsProcessingParameterField.DataType.Numeric),
            'Numeric field to explain, e.g. the kriged or measured element content.')
        self.add(QgsProcessingParameterField(
            self.FEATURES, self.tr('Feature fields'), parentLayerParameterName=self.INPUT,
            type=QgsProcessingParameterField.DataType.Numeric, allowMultiple=True, optional=True),
            'Numeric fields to correlate with the target, e.g. band values. Empty: every numeric '
            'field except the target and a GeoPackage "fid".')
        self.add(QgsProcessingParameterEnum(
            self.METHOD, self.tr('Method'), [label for _, label in METHOD_CHOICES], defaultValue=0),
            'Spearman (rank, robust to skewed contents; the paper\'s choice), Pearson (linear), or both.')
        self.add(QgsProcessingParameterEnum(
            self.MISSING, self.tr('NULL values'), ['Pairwise (per feature)', 'Listwise (all fields)'],
            defaultValue=0),
            'Pairwise: each feature uses the samples where it and the target are present. Listwise: '
            'only samples where every chosen field is present.', advanced=True)
        self.add(QgsProcessingParameterNumber(
            self.ALPHA, self.tr('Significance level (alpha)'), QgsProcessingParameterNumber.Type.Double,
            0.05, False, 1e-6, 0.5),
            'A feature is significant when its Benjamini-Hochberg adjusted p-value is at most alpha '
            '(false discovery rate controlled at alpha).')
        self.add(QgsProcessingParameterFeatureSink(
            self.OUTPUT, self.tr('Correlation table'), compat.SOURCE_TABLE),
            'Table without geometry: feature, method, n, coefficient, p_value, p_adjusted, '
            'significant (1/0, NULL where undefined), note.')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Correlation report'), 'HTML files (*.html)'),
            'HTML report with the table and a bar chart of the coefficients.')

    def execute(self, parameters, context, feedback):
        source, target, features = target_and_features(self, parameters, context, 'to explain',
                                                       every_numeric_by_default=True)
        if target in features or len(set(features)) != len(features):
            feedback.pushWarning(f'{self.FEATURES}: the target field {target} is left out of the features '
                                 'and repeated fields are correlated once.')
        features = [name for name in dict.fromkeys(features) if name != target]
        methods = METHOD_CHOICES[self.parameterAsEnum(parameters, self.METHOD, context)][0]
        missing = MISSING_MODES[self.parameterAsEnum(parameters, self.MISSING, context)]
        alpha = self.parameterAsDouble(parameters, self.ALPHA, context)

        table = read_columns(source, [target, *features], feedback)
        nulls = {name: int(np.isnan(values).sum()) for name, values in table.items()}
        results = correlate(table[target], {name: table[name] for name in features}, methods, alpha,
                            missing, self.TARGET)
        for result in results:
            if result.note:
                feedback.pushWarning(f'{result.feature} ({result.method}): {result.note}')

        written = write_table(self, parameters, self.OUTPUT, context, table_fields(OUTPUT_COLUMNS),
                              [table_row(result) for result in results], f'Correlation with {target}')

        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        write_correlation_report(html_path, target, results, alpha, missing, len(table[target]), nulls)
        return {**written, self.OUTPUT_HTML: html_path}


def read_columns(source, names, feedback):
    """name -> float64 array over every feature of `source`, NaN where the value is NULL."""
    indices = [source.fields().lookupField(name) for name in names]
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.Flag.NoGeometry).setSubsetOfAttributes(indices)
    rows = []
    for feature in source.getFeatures(request):
        if feedback.isCanceled():
            raise CancelledError('cancelled while reading the table')
        rows.append([to_float(feature.attribute(index)) for index in indices])
    array = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return {name: array[:, i] for i, name in enumerate(names)}


def to_float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):  # NULL (QVariant / None)
        return math.nan
    return value if math.isfinite(value) else math.nan


OUTPUT_COLUMNS = (('feature', compat.FIELD_STRING), ('method', compat.FIELD_STRING), ('n', compat.FIELD_INT),
                  ('coefficient', compat.FIELD_DOUBLE), ('p_value', compat.FIELD_DOUBLE),
                  ('p_adjusted', compat.FIELD_DOUBLE), ('significant', compat.FIELD_INT),
                  ('note', compat.FIELD_STRING))


def table_row(result):
    def number(value):
        return None if math.isnan(value) else value
    significant = None if result.significant is None else int(result.significant)
    return [result.feature, result.method, result.n, number(result.coefficient), number(result.p_value),
            number(result.p_adjusted), significant, result.note or None]


def write_correlation_report(path, target, results, alpha, missing, total, nulls):
    symbol = {'spearman': 'rho', 'pearson': 'r'}
    rows = [(r.feature, r.method, r.n, r.coefficient, r.p_value, r.p_adjusted,
             '' if r.significant is None else ('yes' if r.significant else 'no'), r.note) for r in results]
    null_text = ', '.join(f'{name}: {count}' for name, count in nulls.items() if count) or 'none'
    sections = [
        ('Summary', page.paragraph(
            f'Target "{target}", {total} records; NULL values ({null_text}) handled {missing}. '
            f'p-values are two-sided; adjusted by Benjamini-Hochberg (1995) within each method; '
            f'significant when adjusted p <= {alpha:g}.')),
        ('Coefficients', coefficient_chart(results, target, symbol)),
        ('Table', page.table_html(['feature', 'method', 'n', 'coefficient', 'p', 'BH-adjusted p',
                                   'significant', 'note'], rows)),
    ]
    page.write_report(path, f'Correlation with {target}', sections)


def coefficient_chart(results, target, symbol):
    """Horizontal bars per feature (one colour per method); * marks significant coefficients."""
    features = list(dict.fromkeys(r.feature for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    height = 0.8 / len(methods)
    figure, axes = page.new_figure(7.0, 1.5 + 0.35 * len(features) * len(methods))
    for m, method in enumerate(methods):
        chosen = [r for r in results if r.method == method]
        positions = np.arange(len(features)) + m * height
        values = [0.0 if math.isnan(r.coefficient) else r.coefficient for r in chosen]
        axes.barh(positions, values, height, label=f'{method} ({symbol[method]})')
        for position, value, result in zip(positions, values, chosen):
            if math.isnan(result.coefficient):
                axes.text(0, position, ' undefined', va='center', ha='left', color='grey')
            elif result.significant:
                axes.text(value, position, ' * ' if value >= 0 else ' *', va='center',
                          ha='left' if value >= 0 else 'right')
    axes.set_yticks(np.arange(len(features)) + height * (len(methods) - 1) / 2, features)
    axes.invert_yaxis()
    axes.axvline(0, color='black', linewidth=0.8)
    axes.set_xlim(-1.1, 1.1)
    axes.set_xlabel(f'correlation with {target} (* significant after BH adjustment)')
    axes.legend(loc='best')
    return page.figure_html(figure, 'correlation coefficients')
