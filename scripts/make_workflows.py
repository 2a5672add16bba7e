"""Build the shipped Processing workflows models/rareearthinversion.model3 and
models/geochemfusion.model3 (loaded by algorithms/glue/provider.py as rsgeochem:<name>).

The .model3 files are generated, never edited by hand: change this script and rerun it from the
checkout root

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_workflows.py [--output-dir DIR]

Every child step is checked against the registered rsgeochem algorithm (each parameter key exists,
the model validates), so a renamed key stops the build instead of shipping a broken workflow.
Outputs are model outputs named `<childId>:<name>`, which is how `qgis_process run
rsgeochem:<model>` accepts and returns them, e.g. `applyinversionmodel:predicted_map=map.tif`.
"""
import argparse
import html
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __name__ == '__main__':
    # Qt writes XML attributes in hash order: a fixed seed, set before Qt loads, writes the same
    # files on every run (set later, it has no effect)
    os.environ.setdefault('QT_HASH_SEED', '0')

from qgis.core import (  # noqa: E402 - after the hash seed
    QgsExpression,
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

CHECKOUT = Path(__file__).resolve().parent.parent
MODELS_DIR = CHECKOUT / 'models'
SAMPLE = CHECKOUT / 'resources' / 'sample'
GROUP = 'Workflows'
GROUP_ID = 'workflows'
CREATOR = 'RS Geochem Inversion'

# Layout of the Graphical Modeler canvas (scene units): inputs in a column on the left, the steps in
# a column to their right, each step's outputs right of it.
INPUT_X, STEP_X, OUTPUT_X = 150.0, 520.0, 860.0
ROW = 80.0


@dataclass(frozen=True)
class FromParameter:
    """A child parameter fed by a model input."""
    name: str


@dataclass(frozen=True)
class FromChild:
    """A child parameter fed by another step's output."""
    child_id: str
    output: str = 'OUTPUT'


@dataclass(frozen=True)
class FromExpression:
    """A child parameter computed by a QGIS expression of the model inputs (@NAME)."""
    expression: str


@dataclass(frozen=True)
class Output:
    """A step output exposed as model output `<childId>:<name>`, with its label and help."""
    name: str
    description: str
    help: str
    mandatory: bool = False


def help_html(paragraphs):
    """Help text as QGIS shows a model's help: HTML inserted into a paragraph (so text is escaped,
    e.g. "<step>" would vanish as a tag), paragraphs separated."""
    return '</p><p>'.join(html.escape(paragraph, quote=False) for paragraph in paragraphs)


class ModelBuilder:
    """Adds inputs and steps to a QgsProcessingModelAlgorithm, checking every key against the
    registered algorithms."""

    def __init__(self, name, description, help_paragraphs, registry):
        self.model = QgsProcessingModelAlgorithm(name, GROUP, GROUP_ID)
        self.help = {'ALG_DESC': help_html(help_paragraphs), 'SHORT_DESCRIPTION': description,
                     'ALG_CREATOR': CREATOR}
        self.registry = registry
        self.inputs = []
        self.steps = 0

    def add_input(self, definition, help_text, advanced=False):
        from rsgeochem.algorithms.glue import compat
        from rsgeochem.algorithms.glue.checks import range_text  # as the algorithms' help: the range
        help_text = ' '.join(part for part in (help_text, range_text(definition)) if part)
        definition.setHelp(help_text)
        if advanced:
            definition.setFlags(definition.flags() | compat.PARAMETER_ADVANCED)
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(INPUT_X, ROW * (len(self.inputs) + 1)))
        component.setDescription(definition.description())
        self.model.addModelParameter(definition, component)
        self.inputs.append(definition.name())
        self.help[definition.name()] = help_html([help_text])

    def add_step(self, child_id, algorithm_id, description, sources, outputs=None):
        """One child algorithm: `sources` maps its parameter keys to FromParameter, FromChild or a
        static value; `outputs` maps its output keys to Output."""
        algorithm = self.registry.algorithmById(algorithm_id)
        if algorithm is None:
            raise RuntimeError(f'{algorithm_id} is not registered: is the rsgeochem provider loaded?')
        outputs = outputs or {}
        for key in [*sources, *outputs]:
            if algorithm.parameterDefinition(key) is None:
                raise RuntimeError(f'{algorithm_id} has no parameter {key}')
        child = QgsProcessingModelChildAlgorithm(algorithm_id)
        child.setChildId(child_id)
        child.setDescription(description)
        y = ROW * (1 + 2 * self.steps)
        child.setPosition(QPointF(STEP_X, y))
        for key, source in sources.items():
            if isinstance(source, FromParameter):
                value = self.parameter_source(source.name, algorithm.parameterDefinition(key))
            elif isinstance(source, FromChild):
                value = QgsProcessingModelChildParameterSource.fromChildOutput(source.child_id, source.output)
            elif isinstance(source, FromExpression):
                value = QgsProcessingModelChildParameterSource.fromExpression(source.expression)
            else:
                value = QgsProcessingModelChildParameterSource.fromStaticValue(source)
            child.addParameterSources(key, [value])
        for definition in algorithm.parameterDefinitions():
            # the Graphical Modeler stores every other input's default, as a static value
            if (definition.name() not in sources and not definition.isDestination()
                    and definition.defaultValue() is not None):
                child.addParameterSources(definition.name(), [
                    QgsProcessingModelChildParameterSource.fromStaticValue(definition.defaultValue())])
        model_outputs = {}
        for index, (key, spec) in enumerate(outputs.items()):
            output = QgsProcessingModelOutput(spec.name, spec.description)
            output.setChildId(child_id)
            output.setChildOutputName(key)
            output.setMandatory(spec.mandatory)
            # not given in the dialog or processing.run -> a temporary file (an empty value would skip
            # the step's output and fail it); qgis_process still asks for every non-optional output
            output.setDefaultValue(QgsProcessing.TEMPORARY_OUTPUT)
            output.setPosition(QPointF(OUTPUT_X, y + 40.0 * index))
            model_outputs[spec.name] = output
            self.help[f'{child_id}:{spec.name}'] = help_html([spec.help])
        child.setModelOutputs(model_outputs)
        self.model.addChildAlgorithm(child)
        self.steps += 1

    def parameter_source(self, name, child_parameter):
        """A link to model input `name`. QGIS 3.22 passes nothing for an input left out of a
        qgis_process or processing.run call, so the step would fall back to its own default: where
        that differs from the input's default, the link is the expression coalesce(@name, default)."""
        default = self.model.parameterDefinition(name).defaultValue()
        if default is None or default == child_parameter.defaultValue():
            return QgsProcessingModelChildParameterSource.fromModelParameter(name)
        literal = QgsExpression.quotedValue(default)
        return QgsProcessingModelChildParameterSource.fromExpression(f'coalesce(@{name}, {literal})')

    def finish(self):
        self.model.updateDestinationParameters()
        self.model.setParameterOrder(self.inputs)
        self.model.setHelpContent(self.help)
        valid, problems = self.model.validate()
        if not valid:
            raise RuntimeError(f'{self.model.name()} does not validate: {problems}')
        return self.model


# Kriging of the model inputs SAMPLES / FIELD (ordinary Kriging, variogram chosen automatically).
KRIGING_SAMPLES = {'INPUT': FromParameter('SAMPLES'), 'FIELD': FromParameter('FIELD')}
# the anomaly step's settings, model inputs of both workflows (add_anomaly_inputs)
ANOMALY_SETTINGS = {'METHOD': FromParameter('ANOMALY_METHOD'),
                    'FIXED_THRESHOLD': FromParameter('FIXED_THRESHOLD'),
                    'SMOOTHING': FromParameter('SMOOTHING'), 'MIN_AREA': FromParameter('MIN_AREA')}
# Defaults tuned on the sample data set and right in general (see each input's help):
MIN_ANOMALY_AREA = 2500.0   # m²: 1 mm² on a 1:50,000 map, the smallest area such a map shows
NIR_WATER_THRESHOLD = 0.07  # NIR surface reflectance below which a pixel is (turbid) water
COMPARE_ALL_MODELS = 4      # traininversionmodel MODEL: the CNN and the baselines, the best maps
# Kriging of the rare-earth samples: over their extent plus this margin (image CRS units, metres for a
# GF-2 product in UTM), cut to the image. 500 m is two to five sample spacings of a detailed soil survey
# (100-250 m; 110 m in the sample data): farther out Kriging extrapolates (to the samples' mean beyond
# the variogram's range), which a geologist would not map.
KRIGING_MARGIN = 500.0


def add_anomaly_inputs(builder):
    """The inputs of the last step of both workflows: threshold method, fixed threshold, smoothing and
    smallest area."""
    from rsgeochem.algorithms.anomalies import DEFAULT_SMOOTHING, METHODS, PERCENTILE_METHOD
    number = QgsProcessingParameterNumber
    builder.add_input(QgsProcessingParameterEnum('ANOMALY_METHOD', 'Anomaly threshold', list(METHODS),
                                                 defaultValue=PERCENTILE_METHOD),
                      'How the high-anomaly threshold is set: mean + 2 SD, median + 2 MAD, the 95th '
                      'percentile (default: the top 5 % of the smoothed map, whatever the shape of its '
                      'distribution), the concentration-area fractal method (for a map whose C-A plot, in '
                      'the anomaly report, bends sharply) or a fixed value (Fixed anomaly threshold).')
    builder.add_input(number('FIXED_THRESHOLD', 'Fixed anomaly threshold (content units)', number.Type.Double,
                             0.065),
                      'For the fixed-value threshold: content at or above this is anomalous, in the units '
                      'of the content (Cheng et al. 2023 outlined RE2O3 ≥ 0.065 %).', advanced=True)
    builder.add_input(number('SMOOTHING', 'Anomaly smoothing window (pixels, odd; 1 = none)',
                             number.Type.Integer, DEFAULT_SMOOTHING, False, 1, 101),
                      'The content map is averaged over a square of this many pixels a side before the '
                      'threshold, so pixel noise makes no anomaly and areas stay clear of the image edge '
                      'and of masked pixels.', advanced=True)
    builder.add_input(number('MIN_AREA', 'Smallest anomaly area (m²)', number.Type.Double, MIN_ANOMALY_AREA,
                             False, 0.0),
                      'Anomaly areas smaller than this (map units², m² in a metric CRS) are dropped. The '
                      'default, 2500 m², is 1 mm² on a 1:50,000 map, the smallest area such a map shows; 0 '
                      'keeps every area larger than the smoothing window.')


def dos1_band_fields():
    """Field names rsgeochem:surfacesamples gives the bands of step 2's output: the GF-2 sample scene
    is calibrated and DOS1-corrected by the algorithms themselves and its band descriptions are made
    field-safe the way surfacesamples does, so the workflow follows the algorithms' naming."""
    import processing
    from osgeo import gdal

    from rsgeochem.algorithms.surfacesamples import FIXED_FIELDS
    from rsgeochem.core.geostat.surface_samples import band_field_names
    with tempfile.TemporaryDirectory() as folder:
        toa = processing.run('rsgeochem:radiometriccalibration', {
            'INPUT': str(SAMPLE / 'gf2like_pms1_dn.tif'), 'SENSOR': 0, 'GAINS': '1,1,1,1',
            'ESUN': '1000,1000,1000,1000', 'SUN_ELEVATION': 45.0, 'DATE': '2016-08-20',
            'OUTPUT': f'{folder}/toa.tif'})['OUTPUT']
        surface = processing.run('rsgeochem:darkobjectsubtraction', {
            'INPUT': toa, 'METHOD': 0, 'OUTPUT': f'{folder}/surface.tif'})['OUTPUT']
        dataset = gdal.Open(surface)
        descriptions = [dataset.GetRasterBand(n + 1).GetDescription() for n in range(dataset.RasterCount)]
        dataset = None
    return band_field_names(descriptions, ['fid', *(name for name, _ in FIXED_FIELDS)])


def rare_earth_inversion(registry):
    """rareearthinversion: Cheng et al. (2023) from DN image and samples to anomaly areas."""
    from rsgeochem.algorithms.glue import compat
    from rsgeochem.algorithms.kriging import SAMPLES_IN_REFERENCE, WHOLE_REFERENCE
    from rsgeochem.algorithms.surfacesamples import AT_SAMPLE, TARGET_CHOICES
    from rsgeochem.algorithms.traininversionmodel import MODEL_CHOICES, SPLIT_CHOICES
    from rsgeochem.core.imagery.sensors import sensor_names

    builder = ModelBuilder('rareearthinversion', 'Rare-earth inversion workflow (GF-2 image + samples -> '
                           'content map and anomaly areas)', RARE_EARTH_HELP, registry)
    add = builder.add_input
    number = QgsProcessingParameterNumber
    add(QgsProcessingParameterRasterLayer('IMAGE', 'GF-2 PMS multispectral image (DN, bands 1-4)'),
        'The 4-band GF-2 PMS multispectral scene in digital numbers (blue, green, red, NIR), '
        'e.g. the product\'s MSS GeoTIFF, in a projected CRS (metres).')
    add(QgsProcessingParameterFile('METADATA', 'Scene metadata XML', QgsProcessingParameterFile.Behavior.File,
                                   'xml'),
        'The scene\'s .xml (CRESDA ProductMetaData): acquisition date and sun angle for the TOA '
        'reflectance.')
    add(QgsProcessingParameterEnum('SENSOR', 'Sensor', sensor_names()[:2], defaultValue=0),
        'GF-2 PMS1 or PMS2 camera.')
    add(QgsProcessingParameterString('GAINS', 'Radiance gains (one per band, comma-separated)'),
        'CRESDA absolute calibration gains of the acquisition year, W m-2 sr-1 um-1 per DN, bands '
        '1-4, e.g. 0.1322,0.155,0.1477,0.1613 (PMS1, 2016). Radiance = gain × DN + offset.')
    add(QgsProcessingParameterString('OFFSETS', 'Radiance offsets (empty = 0)', optional=True),
        'CRESDA calibration offsets, W m-2 sr-1 um-1, bands 1-4; empty means 0 for every band.')
    add(QgsProcessingParameterString('ESUN', 'Solar irradiance ESUN (one per band)'),
        'Exo-atmospheric solar irradiance of bands 1-4 (W m-2 um-1), e.g. '
        '1944.98,1854.42,1542.87,1080.97 (values commonly cited for GF-2 PMS1).')
    add(QgsProcessingParameterFeatureSource('SAMPLES', 'Topsoil samples (points)',
                                            [compat.SOURCE_POINTS]),
        'Point layer of the geochemical samples (any CRS; transformed to the image CRS).')
    add(QgsProcessingParameterField('FIELD', 'Content field', parentLayerParameterName='SAMPLES',
                                    type=QgsProcessingParameterField.DataType.Numeric),
        'Numeric field with the measured content, e.g. RE2O3 in %.')
    add(QgsProcessingParameterString('UNITS', 'Content units', '% RE2O3', optional=True),
        'Units of the content field, written into the model, the reports and the map\'s legend; "% RE2O3" '
        'names the map "RE2O3 predicted (%)".')
    add(number('MEASUREMENT_ERROR', 'Measurement-error variance of the content', number.Type.Double, 0.0,
               False, 0.0),
        'Variance of the analytical error of the content (squared units of the Content field, e.g. from '
        'duplicate analyses) for step 4: the kriged map then predicts the error-free content and is '
        'smoothed at the samples. 0: exact Kriging.')
    add(QgsProcessingParameterEnum('TARGET_VALUE', 'Content paired with the spectra', list(TARGET_CHOICES),
                                   defaultValue=AT_SAMPLE),
        'What the model learns at each sample\'s pixel (step 5). Content at the sample itself (default): the '
        'measured value (what exact Kriging returns at the sample\'s own position; with a Measurement-'
        'error variance the kriged surface is smoothed there too); it keeps the '
        'pixel-scale variation that the pixel\'s spectrum explains. Kriged content at the pixel centre: '
        'smoothed over the neighbouring samples wherever a sample lies off its pixel centre or the '
        'measurement error is set, so the map keeps only the smooth part of the content.')
    add(QgsProcessingParameterBoolean('MASK_VEGETATION', 'Mask vegetation (NDVI > 0.3)', False),
        'Leave vegetated pixels out of the training samples, the map and the anomalies (the paper '
        'names vegetation as a limitation). Off by default: on a forested scene it removes most '
        'samples. Water is always masked (see the two water thresholds).')
    add(number('NDWI_THRESHOLD', 'Water: NDWI threshold', number.Type.Double, 0.0, False, -1.0, 1.0),
        'Pixels with McFeeters NDWI = (green - NIR) / (green + NIR) above this are water and masked. 0 '
        'is the published threshold; turbid rivers and mixed shore pixels need a lower one (e.g. -0.2) '
        'or the NIR water threshold, else their odd spectra give false anomalies.')
    add(number('NIR_WATER_THRESHOLD', 'Water: NIR reflectance below (0 = off)', number.Type.Double,
               NIR_WATER_THRESHOLD, False, 0.0, 1.0),
        'Pixels whose surface reflectance in the NIR (band 4, after step 2) is below this are water too, '
        'whatever their NDWI: catches turbid, sediment-laden water that NDWI misses. The default 0.07 '
        'masks all the turbid river water of the sample scene and almost no land (soil, rock and '
        'vegetation reflect more in the NIR, deep shadows aside); 0 turns it off.')
    add(QgsProcessingParameterFeatureSource('EXCLUDE_POLYGONS', 'Villages / buildings to exclude',
                                            [compat.SOURCE_POLYGONS], optional=True),
        'Optional polygons (villages, buildings, ponds) masked like water: the paper names buildings as '
        'the source of false anomalies.')
    add(QgsProcessingParameterEnum('MODEL', 'Inversion model', [label for _, label in MODEL_CHOICES],
                                   defaultValue=COMPARE_ALL_MODELS),
        'Compare all (default): the paper\'s CNN and the MLR, PLSR and random-forest baselines are '
        'trained on the same split and the best by test RMSE maps the image (the paper lacked this '
        'comparison). Or one model alone.')
    add(QgsProcessingParameterEnum('SPLIT', 'Train/test split', list(SPLIT_CHOICES), defaultValue=1),
        'Spatial blocks (default) keep neighbouring, nearly identical samples out of the test set; '
        'Random is the paper\'s 2:1 split.')
    add(number('ITERATIONS', 'CNN iterations', number.Type.Integer, 5000, False, 1, 1000000),
        'Mini-batch updates of the CNN (paper: 5000).', advanced=True)
    add(number('SEED', 'Random seed', number.Type.Integer, 1, False, 0, 2 ** 31 - 1),
        'Seed of the split and the model: the same seed gives the same map.', advanced=True)
    add(number('KRIGING_MARGIN', 'Kriging margin around the samples (image CRS units)', number.Type.Double,
               KRIGING_MARGIN, False, 0.0),
        'Steps 4 and 11 krige over the samples\' extent enlarged by this distance on every side, on the '
        'image\'s grid and within the image (units of the image CRS: metres for a GF-2 product in UTM). '
        'The default, 500 m, is two to five sample spacings of a detailed soil survey (100-250 m): '
        'farther out Kriging extrapolates, to the samples\' mean beyond the variogram\'s range. The map '
        'of the whole image is the inversion model\'s (step 8).', advanced=True)
    add(QgsProcessingParameterBoolean('KRIGE_WHOLE_IMAGE', 'Krige the whole image', False),
        'Krige onto every pixel of the image instead of the samples\' extent plus the Kriging margin: '
        'far from the samples the kriged maps are only their mean, and on a full GF-2 scene each Kriging '
        'then takes tens of CPU seconds instead of about one.', advanced=True)
    add_anomaly_inputs(builder)

    band_fields = dos1_band_fields()
    calibration, dos, mask, krige = ('radiometriccalibration', 'darkobjectsubtraction', 'surfacemask',
                                     'kriging')
    samples, correlation, train, apply = ('surfacesamples', 'correlation', 'traininversionmodel',
                                          'applyinversionmodel')
    step = builder.add_step
    step(calibration, 'rsgeochem:radiometriccalibration', '1 Calibrate to TOA', {
        'INPUT': FromParameter('IMAGE'), 'SENSOR': FromParameter('SENSOR'),
        'METADATA': FromParameter('METADATA'), 'GAINS': FromParameter('GAINS'),
        'OFFSETS': FromParameter('OFFSETS'), 'ESUN': FromParameter('ESUN'), 'QUANTITY': 0})
    step(dos, 'rsgeochem:darkobjectsubtraction', '2 Surface reflectance', {
        'INPUT': FromChild(calibration), 'METHOD': 0},
        {'OUTPUT': Output('surface_reflectance', 'Surface reflectance (DOS1)',
                          'The image corrected to surface reflectance (dark object subtraction, DOS1).'),
         'OUTPUT_HTML': Output('dos_report', 'Atmospheric correction report',
                               'Dark objects and path reflectance of each band (HTML).')})
    step(mask, 'rsgeochem:surfacemask', '3 Mask water etc.', {
        'INPUT': FromChild(dos), 'MASK_VEGETATION': FromParameter('MASK_VEGETATION'),
        'MASK_WATER': True, 'NDWI_THRESHOLD': FromParameter('NDWI_THRESHOLD'),
        'NIR_WATER_THRESHOLD': FromParameter('NIR_WATER_THRESHOLD'),
        'EXCLUDE_POLYGONS': FromParameter('EXCLUDE_POLYGONS')},
        {'OUTPUT': Output('surface_mask', 'Surface mask',
                          'Pixels left out of the samples, the map and the anomalies (0 masked, 1 kept).')})
    # the samples' extent plus the margin within the image, or (KRIGE_WHOLE_IMAGE) the whole image
    grid_extent = f'if(@KRIGE_WHOLE_IMAGE, {WHOLE_REFERENCE}, {SAMPLES_IN_REFERENCE})'
    step(krige, 'rsgeochem:kriging', '4 Krige the samples', {
        **KRIGING_SAMPLES, 'REFERENCE_RASTER': FromChild(dos), 'GRID_EXTENT': FromExpression(grid_extent),
        'MARGIN': FromParameter('KRIGING_MARGIN'), 'MEASUREMENT_ERROR': FromParameter('MEASUREMENT_ERROR')},
        {'OUTPUT': Output('kriged', 'Kriged content',
                          'The samples kriged onto the image\'s grid over their extent plus the Kriging '
                          'margin, within the image (the whole image with Krige the whole image).'),
         'OUTPUT_VARIANCE': Output('kriging_variance', 'Kriging variance',
                                   'Kriging variance of the kriged content (its uncertainty).'),
         'OUTPUT_HTML': Output('kriging_report', 'Kriging report',
                               'Variogram, its fit and the cross-validation of the Kriging (HTML).')})
    step(samples, 'rsgeochem:surfacesamples', '5 Pair content/spectra', {
        'INPUT': FromChild(dos), 'SAMPLES': FromParameter('SAMPLES'), 'FIELD': FromParameter('FIELD'),
        'KRIGED': FromChild(krige), 'VARIANCE': FromChild(krige, 'OUTPUT_VARIANCE'),
        'MASK': FromChild(mask), 'WINDOW': 0, 'TARGET_VALUE': FromParameter('TARGET_VALUE')},
        {'OUTPUT': Output('surface_samples', 'Surface-to-surface samples',
                          'Each sample with the kriged content, the target content and the band values at '
                          'its pixel.')})
    step(correlation, 'rsgeochem:correlation', '6 Band correlation', {
        'INPUT': FromChild(samples), 'TARGET': 'target', 'FEATURES': band_fields, 'METHOD': 0},
        {'OUTPUT': Output('correlation_table', 'Band correlation table',
                          'Spearman correlation of the content with each band.'),
         'OUTPUT_HTML': Output('correlation_report', 'Band correlation report',
                               'Correlation chart and table (HTML).')})
    step(train, 'rsgeochem:traininversionmodel', '7 Train the model', {
        'INPUT': FromChild(samples), 'TARGET': 'target', 'FEATURES': band_fields,
        'TARGET_UNITS': FromParameter('UNITS'), 'MODEL': FromParameter('MODEL'),
        'SPLIT': FromParameter('SPLIT'), 'ITERATIONS': FromParameter('ITERATIONS'),
        'SEED': FromParameter('SEED')},
        {'OUTPUT_MODEL': Output('inversion_model', 'Inversion model (ONNX)',
                                'The trained model, reusable with "Apply inversion model".'),
         'OUTPUT_HTML': Output('training_report', 'Training report',
                               'Train and test metrics (R², RMSE, RPD) of each model, loss and split map '
                               '(HTML).')})
    step(apply, 'rsgeochem:applyinversionmodel', '8 Map the content', {
        'INPUT': FromChild(dos), 'MODEL': FromChild(train, 'OUTPUT_MODEL'), 'BANDS': [1, 2, 3, 4],
        'MASK': FromChild(mask)},
        {'OUTPUT': Output('predicted_map', 'Predicted content map',
                          'The content predicted at every unmasked pixel of the image.', mandatory=True)})
    step('anomalies', 'rsgeochem:anomalies', '9 Anomaly areas', {
        'INPUT': FromChild(apply), 'MASK': FromChild(mask), **ANOMALY_SETTINGS},
        {'OUTPUT': Output('anomaly_areas', 'High-anomaly areas',
                          'Polygons of the high-anomaly areas, ranked I, II, ... by mean content × area.'),
         'OUTPUT_HTML': Output('anomaly_report', 'Anomaly report',
                               'Statistics, threshold, map and ranked table of the anomaly areas (HTML).')})
    step('accuracyassessment', 'rsgeochem:accuracyassessment', '10 Predicted at samples', {
        'INPUT': FromChild(apply), 'POINTS': FromParameter('SAMPLES'), 'FIELD': FromParameter('FIELD')},
        {'OUTPUT': Output('predicted_at_samples', 'Samples with the predicted content',
                          'The samples with their measured and predicted content and the residual.'),
         'OUTPUT_HTML': Output('accuracy_report', 'Predicted against measured at the samples',
                               'R², RMSE and RPD of the predicted map at the samples, with a plot (HTML).')})
    step('kriging_predicted', 'rsgeochem:kriging', '11 Krige predictions', {
        'INPUT': FromChild('accuracyassessment'), 'FIELD': 'predicted', 'REFERENCE_RASTER': FromChild(krige),
        'GRID_EXTENT': WHOLE_REFERENCE},
        {'OUTPUT': Output('kriged_predicted', 'Kriged predicted content',
                          'The predicted content at the samples kriged onto the grid of the Kriged content '
                          '(step 4).')})
    step('comparemaps', 'rsgeochem:comparemaps', '12 Compare the maps', {
        'INPUT': FromChild('kriging_predicted'), 'REFERENCE': FromChild(krige), 'MASK': FromChild(mask),
        'UNITS': FromParameter('UNITS')},
        {'OUTPUT': Output('map_difference', 'Kriged predicted - kriged measured',
                          'Difference of the two kriged maps (the paper\'s Fig. 10 check).'),
         'OUTPUT_HTML': Output('map_comparison_report', 'Map comparison report',
                               'r, R², RMSE and bias of the two kriged maps, side by side (HTML).')})
    return builder.finish()


def geochem_fusion(registry):
    """geochemfusion: Remote Sens. 2023, 15, 1993 from coarse samples and an image to anomaly areas."""
    from rsgeochem.algorithms.glue import compat
    from rsgeochem.algorithms.laplacianfusion import LaplacianFusionAlgorithm

    builder = ModelBuilder('geochemfusion', 'Geochemical fusion workflow (coarse survey + image -> fine '
                           'content map and anomaly areas)', FUSION_HELP, registry)
    add = builder.add_input
    number = QgsProcessingParameterNumber
    add(QgsProcessingParameterRasterLayer('IMAGE', 'Fine multispectral image (reflectance)'),
        'Surface (or TOA) reflectance of the fine image, e.g. the Surface reflectance (DOS1) output of the '
        'rare-earth inversion workflow or of "Dark object subtraction"; its grid is the output grid.')
    add(QgsProcessingParameterFeatureSource('SAMPLES', 'Coarse survey samples (points)',
                                            [compat.SOURCE_POINTS]),
        'Points of the regional (e.g. 1:200,000) survey, one per composite sample or grid cell, in a '
        'projected CRS (metres): step 1 krige them in their own CRS and step 3 reprojects the grid to '
        'the image.')
    add(QgsProcessingParameterField('FIELD', 'Content field', parentLayerParameterName='SAMPLES',
                                    type=QgsProcessingParameterField.DataType.Numeric),
        'Numeric field with the element content, e.g. Cu in ppm.')
    add(number('CELL_SIZE', 'Coarse grid cell size (units of the samples\' CRS)', number.Type.Double, 500.0,
               False, 1.0),
        'Pixel size of the kriged coarse grid, about the survey\'s sample spacing (500 m for a '
        '1:200,000 survey); the grid also extends this far beyond the outermost samples.')
    add(QgsProcessingParameterBoolean('STANDARDIZE', 'Standardise bands before PCA', True),
        'Correlation-matrix PCA (bands of different brightness weigh equally).')
    add(number('COMPONENT', 'Principal component used as predictor', number.Type.Integer, 2, False, 1, 50),
        'Component of the image injected into the grid; the paper used PC2 (PC1 is mostly '
        'brightness).')
    add(QgsProcessingParameterEnum('MODE', 'Fusion mode', list(LaplacianFusionAlgorithm.MODE_LABELS),
                                   defaultValue=1),
        'Coherent (default): the kriged grid is kept and only image detail is added. Paper: the low '
        'frequency is replaced by its regression on the image.')
    add(QgsProcessingParameterEnum('REGRESSION', 'Regression',
                                   list(LaplacianFusionAlgorithm.REGRESSION_LABELS), defaultValue=2),
        'Least squares (the paper\'s), the noise-aware ridge, or the nonlinear regression (default, the '
        'most accurate on our Wald benchmarks). The paper\'s configuration: Fusion mode "Paper", '
        'Regression "Least squares", Residual correction passes 0.')
    add(number('CLUSTERS', 'K-means clusters (1 = global regression)', number.Type.Integer, 1, False, 1, 50),
        '1: one global regression (paper\'s global mode); 2 or more: one regression per cluster of '
        'the image (the paper\'s local mode).')
    add(QgsProcessingParameterBand('CLUSTER_BANDS', 'Principal components for the K-means clusters', None,
                                   'IMAGE', optional=True, allowMultiple=True),
        'Components (by number: the band list of the image stands for components 1, 2, ...) the K-means '
        'clusters (2 or more) group pixels by, e.g. 1-3 to separate geological units as the paper does, '
        'while the regression uses the Principal component above. Empty: that component. A number beyond '
        'the components the PCA keeps is refused.')
    add(QgsProcessingParameterBoolean('LOCAL_REGRESSION', 'Blend in a local regression', True),
        'With the nonlinear regression in coherent mode: average it with a geographically weighted linear '
        'regression fitted at every coarse cell (see "Laplacian pyramid fusion"). Off: the global '
        'regression alone.')
    add(number('RESIDUAL_ITERATIONS', 'Residual correction passes', number.Type.Integer, 1, False, 0, 10),
        'Passes that average the fused map onto the coarse cells and add back the cubic-resampled '
        'residual, so the map reproduces the grid (0: the paper; the nonlinear regression in coherent '
        'mode always makes at least one).')
    add(number('LEVELS', 'Pyramid levels (0 = from resolution ratio)', number.Type.Integer, 0, False, 0, 8),
        'Levels of the Laplacian pyramid; 0 derives them from the grid/image resolution ratio.',
        advanced=True)
    add(QgsProcessingParameterRasterLayer('MASK', 'Mask (1 keep, 0 masked)', optional=True),
        'Optional raster on the image grid (e.g. from "Surface mask"): masked pixels are left out of the '
        'fit, the map and the anomalies.')
    add(QgsProcessingParameterRasterLayer('REFERENCE', 'Reference layer (check only)', optional=True),
        'Optional finer map to compare the fused map with (its correlation is in the fusion report).')
    add_anomaly_inputs(builder)

    step = builder.add_step
    step('kriging', 'rsgeochem:kriging', '1 Krige coarse grid', {
        **KRIGING_SAMPLES, 'PIXEL_SIZE': FromParameter('CELL_SIZE'), 'MARGIN': FromParameter('CELL_SIZE')},
        {'OUTPUT': Output('kriged_grid', 'Kriged coarse grid', 'The survey kriged onto the coarse grid.'),
         'OUTPUT_HTML': Output('kriging_report', 'Kriging report',
                               'Variogram, its fit and the cross-validation of the Kriging (HTML).')})
    step('principalcomponents', 'rsgeochem:principalcomponents', '2 Principal components', {
        'INPUT': FromParameter('IMAGE'), 'MASK': FromParameter('MASK'),
        'STANDARDIZE': FromParameter('STANDARDIZE')},
        {'OUTPUT': Output('components', 'Principal components', 'Principal components of the image.'),
         'OUTPUT_HTML': Output('pca_report', 'PCA report', 'Loadings and explained variance (HTML).')})
    step('laplacianfusion', 'rsgeochem:laplacianfusion', '3 Pyramid fusion', {
        'INPUT_GEOCHEM': FromChild('kriging'), 'INPUT_IMAGE': FromChild('principalcomponents'),
        'BANDS': FromParameter('COMPONENT'), 'MASK': FromParameter('MASK'), 'MODE': FromParameter('MODE'),
        'REGRESSION': FromParameter('REGRESSION'), 'CLUSTERS': FromParameter('CLUSTERS'),
        'RESIDUAL_ITERATIONS': FromParameter('RESIDUAL_ITERATIONS'), 'LEVELS': FromParameter('LEVELS'),
        'REFERENCE': FromParameter('REFERENCE'), 'CLUSTER_BANDS': FromParameter('CLUSTER_BANDS'),
        'LOCAL_REGRESSION': FromParameter('LOCAL_REGRESSION')},
        {'OUTPUT': Output('fused_map', 'Fused content map',
                          'The coarse grid sharpened with the image, on the image grid.', mandatory=True),
         'OUTPUT_TABLE': Output('coefficients', 'Regression coefficients',
                                'Coefficients of the regression of the grid on the image, per cluster.'),
         'OUTPUT_HTML': Output('fusion_report', 'Fusion report',
                               'Fusion settings, regression, coherence and reference check (HTML).')})
    step('anomalies', 'rsgeochem:anomalies', '4 Anomaly areas', {
        'INPUT': FromChild('laplacianfusion'), 'MASK': FromParameter('MASK'), **ANOMALY_SETTINGS},
        {'OUTPUT': Output('anomaly_areas', 'High-anomaly areas',
                          'Polygons of the high-anomaly areas, ranked I, II, ... by mean content × area.'),
         'OUTPUT_HTML': Output('anomaly_report', 'Anomaly report',
                               'Statistics, threshold, map and ranked table of the anomaly areas (HTML).')})
    return builder.finish()


RARE_EARTH_HELP = (
    'Maps the content of an element (rare-earth oxides in the paper) from a GF-2 image and topsoil '
    'samples, and outlines its high-anomaly areas: the method of Cheng et al. (2023, ion-adsorption '
    'rare-earth ore from GF-2 imagery) in one run, with the fixes the authors asked for (a comparison '
    'with other models, vegetation and building masks, a spatial test split) and the paper\'s map-to-map '
    'check.',
    'Give the GF-2 PMS multispectral image (in digital numbers) with its Scene metadata XML, the '
    'Radiance gains and Solar irradiance ESUN of the acquisition year (CRESDA tables), and the Topsoil '
    'samples with their Content field; when the laboratory states its analytical error, give the '
    'Measurement-error variance of the content. The defaults suit a first run: water is masked (turbid '
    'rivers too), the paper\'s CNN is compared with three baselines and the best maps the image, and '
    'anomaly areas above the 95th percentile are outlined on the smoothed map, keeping the 10 highest-ranked '
    'of at least 2500 m².',
    'Steps: 1 radiometric calibration to TOA reflectance; 2 dark-object subtraction (DOS1) to surface '
    'reflectance; 3 a mask of water, optionally vegetation and villages or buildings; 4 ordinary Kriging '
    'of the samples onto the image grid over their extent plus the Kriging margin (500 m), within the '
    'image (of the error-free content when a measurement-error variance is given); 5 the '
    'surface-to-surface sample set (the content at each sample, or the kriged content at its pixel centre, '
    'and the band values of its pixel, masked pixels left out); 6 Spearman correlation of the content '
    'with each band; 7 training on a train/test split (R², RMSE, RPD); 8 the content map over the image '
    '(negative predictions set to 0); 9 the high-anomaly areas, ranked by mean content × area; 10-12 the '
    'paper\'s map-to-map check (its Fig. 10): the predicted content at the samples (R², RMSE and RPD '
    'against the measured values), kriged onto the grid of step 4 and compared with the kriged measured '
    'map of step 4 (r, R², RMSE, bias, difference map). Every map loads named and styled.',
    'From the command line: qgis_process run rsgeochem:rareearthinversion -- IMAGE=scene.tif '
    'METADATA=scene.xml GAINS=... ESUN=... SAMPLES=samples.gpkg FIELD=re2o3_pct '
    'applyinversionmodel:predicted_map=map.tif ... Each output is named by its step and output joined by '
    'a colon, e.g. kriging:kriged; qgis_process needs a file name (or TEMPORARY_OUTPUT) for each output '
    'that is not optional (qgis_process help rsgeochem:rareearthinversion lists them).',
    'Another sensor: open the workflow in the Graphical Modeler and change step 1 and the band field '
    'names of steps 6 and 7.')

FUSION_HELP = (
    'Sharpens a coarse geochemical survey with a fine image and outlines the high-anomaly areas of the '
    'result, after Remote Sens. 2023, 15, 1993 (Cu, 1:200,000 survey to a 1:50,000 map).',
    'Give the Fine multispectral image (reflectance, e.g. from the rare-earth inversion workflow or '
    '"Dark object subtraction"), the Coarse survey samples with their Content field and the Coarse grid '
    'cell size (about the sample spacing). Optionally a Mask and a finer Reference layer to check the '
    'result against. The paper\'s own configuration: Fusion mode "Paper", Regression "Least squares", '
    'Residual correction passes 0 (K-means clusters 2 or more for its local mode).',
    'Steps: 1 ordinary Kriging of the survey onto a coarse grid; 2 principal components of the image '
    '(the paper injected PC2); 3 Laplacian-pyramid fusion of the grid with the chosen component (global '
    'or K-means local regression; least-squares, noise-aware or nonlinear regression; paper or coherent '
    'mode; residual passes), with the optional reference check; 4 the high-anomaly areas of the fused '
    'map.',
    'To inject mineral or alteration indices instead of a principal component, open the workflow in the '
    'Graphical Modeler and replace step 2 by "Spectral indices and band ratios" (and the Principal '
    'component used as predictor by the index band).',
    'From the command line: qgis_process run rsgeochem:geochemfusion -- IMAGE=reflectance.tif '
    'SAMPLES=survey.gpkg FIELD=cu_ppm laplacianfusion:fused_map=fused.tif ... Each output is named by its '
    'step and output joined by a colon, e.g. kriging:kriged_grid; qgis_process needs a file name (or '
    'TEMPORARY_OUTPUT) for each output that is not optional (qgis_process help rsgeochem:geochemfusion '
    'lists them).')

BUILDERS = (rare_earth_inversion, geochem_fusion)


def build_models(registry):
    """{name: QgsProcessingModelAlgorithm} of every shipped workflow."""
    return {model.name(): model for model in (build(registry) for build in BUILDERS)}


def write_models(registry, folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in build_models(registry).items():
        path = folder / f'{name}.model3'
        if not model.toFile(str(path)):
            raise RuntimeError(f'could not write {path}')
        paths.append(path)
    return paths


def start_qgis():
    """A QgsApplication with Processing and the rsgeochem algorithms (not the shipped models, which
    are what this script writes; `rsgeochem` must be importable). Returns (app, provider): keep both
    referenced."""
    sys.path.append('/usr/share/qgis/python/plugins')
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing
    Processing.initialize()
    from rsgeochem.algorithms.glue.provider import RsGeochemProvider, algorithm_classes

    class AlgorithmsOnly(RsGeochemProvider):
        def loadAlgorithms(self):  # noqa: N802 - QGIS API
            for cls in algorithm_classes():
                self.addAlgorithm(cls())

    provider = AlgorithmsOnly()
    QgsApplication.processingRegistry().addProvider(provider)
    return app, provider


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output-dir', default=str(MODELS_DIR), help='folder for the .model3 files')
    args = parser.parse_args(argv)
    from checkout_package import plugin_package  # scripts/ is on sys.path (the script's folder)
    with plugin_package():
        app, provider = start_qgis()
        from qgis.core import QgsApplication
        for path in write_models(QgsApplication.processingRegistry(), args.output_dir):
            print(f'wrote {path}')
        QgsApplication.processingRegistry().removeProvider(provider)
        app.exitQgis()


if __name__ == '__main__':
    main()
