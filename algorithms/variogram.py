"""Processing glue: experimental variogram and model fit of a numeric field of a point layer.

Also holds the glue the `kriging` algorithm shares (fit parameters, reading samples)."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core.geostat import kriging_report
from ..core.geostat.kriging import fit_for_samples, prepare_samples
from ..core.geostat.variogram import DEFAULT_LAGS, MODELS, WEIGHTINGS
from ..core.report import page
from .glue import compat
from .glue.base import RsGeochemAlgorithm
from .glue.vectors import read_points

MODEL_OPTIONS = ('auto', *MODELS)
WEIGHTING_KEYS = tuple(WEIGHTINGS)
AUTO_GLOBAL_LIMIT = 2000  # leave-one-out of "auto" uses all samples up to this count, else 32 nearest

INPUT = 'INPUT'
FIELD = 'FIELD'
LOG_TRANSFORM = 'LOG_TRANSFORM'
VARIOGRAM_MODEL = 'VARIOGRAM_MODEL'
N_LAGS = 'N_LAGS'
MAX_DISTANCE = 'MAX_DISTANCE'
FIT_NUGGET = 'FIT_NUGGET'
FIT_WEIGHTS = 'FIT_WEIGHTS'

MODEL_HELP = (
    '"auto" fits every model and keeps the one with the smallest leave-one-out RMSE; or one model. '
    'qgis_process and scripts take the name, not a number: VARIOGRAM_MODEL=auto, spherical, '
    'exponential, gaussian, linear or power. Models, γ(h) = nugget + partial sill × s(h / range) for '
    'h above 0: spherical s = 1.5r - 0.5r³ (r below 1, else 1); exponential s = 1 - exp(-3r); gaussian '
    's = 1 - exp(-(7r/4)²) (the range is the practical range, as in pykrige: gstat\'s Exp range is the '
    'range / 3, its Gau range the range × 4/7); linear s = r and power s = r^exponent (exponent between 0 '
    'and 2) have no sill: the range is the fitting cutoff and the partial sill the semivariance reached '
    'there.')


def add_sample_parameters(algorithm, what):
    algorithm.add(QgsProcessingParameterFeatureSource(
        INPUT, algorithm.tr('Sample points'), [compat.SOURCE_POINTS]),
        f'Point layer of geochemical samples {what}, in a projected CRS (distances in metres or other '
        'linear units). Features without geometry or with a NULL / non-finite value are skipped and '
        'counted; samples at the same location are merged (mean value).')
    algorithm.add(QgsProcessingParameterField(
        FIELD, algorithm.tr('Value field'), parentLayerParameterName=INPUT,
        type=QgsProcessingParameterField.DataType.Numeric),
        'Numeric field to analyse, e.g. the RE2O3 content in % or Zn in ppm.')
    algorithm.add(QgsProcessingParameterBoolean(
        LOG_TRANSFORM, algorithm.tr('Natural logarithm of the values'), False),
        'Work on ln(value), as usual for skewed contents (values of 0 or less are skipped and counted). '
        'Results (semivariances, predictions, variances) are then in log units, not back-transformed.')


def add_fit_parameters(algorithm, default_model=0):
    enum = QgsProcessingParameterEnum(VARIOGRAM_MODEL, algorithm.tr('Variogram model'), list(MODEL_OPTIONS),
                                      defaultValue=MODEL_OPTIONS[default_model])
    enum.setUsesStaticStrings(True)  # values are the model names, so a model can pass MODEL on
    algorithm.add(enum, MODEL_HELP)
    algorithm.add(QgsProcessingParameterNumber(
        N_LAGS, algorithm.tr('Number of lags'), QgsProcessingParameterNumber.Type.Integer, DEFAULT_LAGS,
        False, 3, 200),
        'Lags (distance classes) of equal width between 0 and the maximum distance (gstat: 15).')
    algorithm.add(QgsProcessingParameterNumber(
        MAX_DISTANCE, algorithm.tr('Maximum distance (0 = one third of the diagonal)'),
        QgsProcessingParameterNumber.Type.Double, 0.0, False, 0.0),
        'Largest pair distance used (map units). 0 uses gstat\'s default: one third of the diagonal of '
        'the samples\' bounding box.')
    algorithm.add(QgsProcessingParameterBoolean(FIT_NUGGET, algorithm.tr('Fit a nugget'), True),
                  'Fit a nugget (discontinuity at the origin: measurement error and micro-scale '
                  'variation); unchecked fixes it at 0.', advanced=True)
    algorithm.add(QgsProcessingParameterEnum(
        FIT_WEIGHTS, algorithm.tr('Fit weights'), [label for _, label in WEIGHTINGS.values()],
        defaultValue=0),
        'Weights of the squared residuals of the least-squares fit; N_j is the number of pairs and h_j '
        'the mean distance of lag j. The default is gstat\'s fit.method 7.', advanced=True)


def fit_settings(algorithm, parameters, context):
    """Keyword arguments of core.geostat.kriging.fit_for_samples from the fit parameters."""
    return {'model_name': algorithm.parameterAsEnumString(parameters, VARIOGRAM_MODEL, context) or 'auto',
            'n_lags': algorithm.parameterAsInt(parameters, N_LAGS, context),
            'max_distance': algorithm.parameterAsDouble(parameters, MAX_DISTANCE, context),
            'weighting': WEIGHTING_KEYS[algorithm.parameterAsEnum(parameters, FIT_WEIGHTS, context)],
            'fit_nugget': algorithm.parameterAsBool(parameters, FIT_NUGGET, context)}


def check_projected(crs, key, what='the layer'):
    if crs.isValid() and crs.isGeographic():
        raise QgsProcessingException(
            f'{key}: {what} is in a geographic CRS ({crs.authid()}, degrees), where distances are not '
            'lengths; choose a projected CRS in metres (e.g. the UTM zone): reproject the layer or choose '
            'a projected reference raster.')


def read_point_values(algorithm, parameters, context, feedback, target_crs=None):
    """Points of INPUT with the FIELD value (in `target_crs` if given, else the layer's own CRS,
    which must be projected) and the field name."""
    source = algorithm.parameterAsSource(parameters, INPUT, context)
    if source is None:
        raise QgsProcessingException(f'{INPUT}: choose a point layer.')
    if target_crs is None:
        check_projected(source.sourceCrs(), INPUT)
    fields = compat.parameter_as_strings(algorithm, parameters, FIELD, context)
    if not fields:
        raise QgsProcessingException(f'{FIELD}: choose the numeric field to analyse.')
    return read_points(source, fields[:1], INPUT, context, feedback, target_crs), fields[0]


def to_samples(algorithm, parameters, context, feedback, points, field, drift_values=None):
    """core.geostat.kriging.Samples from read_point_values' points, and the notes on skipped samples."""
    samples = prepare_samples(points.x, points.y, points.values[field], drift_values,
                              algorithm.parameterAsBool(parameters, LOG_TRANSFORM, context))
    notes = '; '.join(text for text in (points.skipped_text(), samples.notes()) if text)
    if notes:
        feedback.pushWarning(f'{INPUT}: {notes}.')
    return samples, notes


def field_label(algorithm, parameters, context, field):
    log = algorithm.parameterAsBool(parameters, LOG_TRANSFORM, context)
    return f'ln({field})' if log else field


class VariogramAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'variogram'
    DISPLAY_NAME = 'Variogram (experimental and fitted model)'
    GROUP_ID = 'sampling'
    TAGS = ('variogram', 'semivariogram', 'geostatistics', 'kriging', 'nugget', 'sill', 'range', 'gstat')
    HELP = (
        'Computes the experimental variogram of a numeric field of point samples and fits a variogram '
        'model: how the difference between two samples grows with their distance, the first step of '
        'Kriging.\n'
        'Use it to look at the spatial structure of a survey, or to fix the variogram that "Kriging" uses '
        '(its nugget, partial sill and range outputs feed "Kriging" in a Graphical Modeler workflow). Give '
        'the Sample points (in a projected CRS) and the Value field; tick Natural logarithm of the values '
        'for skewed contents. The Variogram model "auto" tries every model and keeps the one with the '
        'smallest leave-one-out error. The log and the report warn when a fitted parameter sits on a bound '
        'of the fit (e.g. a range as long as the sampled area: the variogram shows no sill).\n'
        'Outputs: an HTML report (plot, lag table, the model in gstat terms and, for "auto", every '
        'candidate\'s leave-one-out statistics) and the fitted nugget, partial sill, range, power exponent '
        'and model name as numbers.\n'
        'Method details. Experimental variogram: γ(h) = Σ (z_i - z_k)² / (2 N) over the N pairs whose '
        'distance falls in each lag; the Number of lags classes of equal width up to the Maximum distance '
        '(default one third of the bounding-box diagonal), as gstat\'s variogram() (Matheron 1962; Webster '
        '& Oliver 2007). Fit: weighted least squares as gstat\'s fit.variogram (default weights N/h², '
        'fit.method 7; Cressie 1985); the range is searched between a quarter of the first lag distance '
        'and the diagonal of the samples\' bounding box (no pair of samples is farther apart; Journel & '
        'Huijbregts 1978 trust the experimental variogram to about half the extent).')

    OUTPUT_HTML = 'OUTPUT_HTML'
    NUGGET = 'NUGGET'
    SILL = 'SILL'
    RANGE = 'RANGE'
    EXPONENT = 'EXPONENT'
    MODEL = 'MODEL'

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        add_sample_parameters(self, 'with the value to analyse')
        add_fit_parameters(self)
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Variogram report'), 'HTML files (*.html)'),
            'HTML report: variogram plot, lag table, fitted model and (auto) candidate comparison.')
        for key, label in ((self.NUGGET, 'Nugget'), (self.SILL, 'Partial sill'), (self.RANGE, 'Range'),
                           (self.EXPONENT, 'Power exponent')):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputString(self.MODEL, self.tr('Variogram model')))

    def execute(self, parameters, context, feedback):
        points, field = read_point_values(self, parameters, context, feedback)
        samples, notes = to_samples(self, parameters, context, feedback, points, field)
        label = field_label(self, parameters, context, field)
        settings = fit_settings(self, parameters, context)
        neighbours = 0 if len(samples) <= AUTO_GLOBAL_LIMIT else 32
        fit = fit_for_samples(samples, n_neighbours=neighbours, cancel=feedback.isCanceled, **settings)
        model = fit.model
        feedback.pushInfo(f'{model.name}: nugget {model.nugget:.6g}, partial sill {model.psill:.6g}, '
                          f'range {model.range:.6g} ({kriging_report.gstat_equivalent(model)})')
        for warning in fit.warnings:
            feedback.pushWarning(f'Variogram: {warning}')
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            self.write_report(html, label, samples, notes, fit, settings)
        return {self.NUGGET: model.nugget, self.SILL: model.psill, self.RANGE: model.range,
                self.EXPONENT: model.exponent, self.MODEL: model.name, self.OUTPUT_HTML: html}

    def write_report(self, path, field, samples, notes, fit, settings):
        curves = [(f'{fit.model.name} (fitted)', fit.model)]
        if fit.candidates:
            curves += [(model.name, model) for model, _ in fit.candidates if model is not fit.model]
        sections = [
            ('Samples', page.paragraph(f'Field {field}: {len(samples)} samples used'
                                       + (f'; {notes}.' if notes else '.'))),
            ('Variogram', kriging_report.variogram_figure(fit.experimental, curves)
             + kriging_report.fit_note(fit.experimental, settings['weighting'])
             + kriging_report.bound_warnings_html(fit.warnings)),
            ('Fitted model', kriging_report.model_table(fit.model)),
        ]
        if fit.candidates:
            sections.append(('Model choice (leave-one-out cross-validation)',
                             kriging_report.candidates_table(fit.candidates, fit.model)))
        sections.append(('Lags', kriging_report.experimental_table(fit.experimental)))
        page.write_report(path, f'Variogram of {field}', sections)
