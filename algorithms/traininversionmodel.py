"""Processing glue: train the paper's CNN or a baseline on a sample layer, write ONNX + report."""
import numpy as np
from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.errors import InputError
from ..core.inversion import splits, training
from ..core.inversion.cnn import CnnConfig
from ..core.inversion.training_report import write_training_report
from ..core.raster.blockio import check_cancel
from .glue import compat
from .glue.base import RsGeochemAlgorithm, progress_callbacks
from .glue.fields import read_sample_points, target_and_features

MODEL_CHOICES = (
    (('cnn',), 'CNN (Cheng et al. 2023)'),
    (('mlr',), 'Multiple linear regression'),
    (('plsr',), 'PLS regression'),
    (('rf',), 'Random forest'),
    (training.MODEL_TYPES, 'Compare all (write the best by test RMSE)'),
)
SPLIT_CHOICES = ('Random', 'Spatial blocks')
METRIC_OUTPUTS = (('R2', 'r2', 'R²'), ('RMSE', 'rmse', 'RMSE'), ('RPD', 'rpd', 'RPD'),
                  ('RPIQ', 'rpiq', 'RPIQ'), ('BIAS', 'bias', 'bias'))


class TrainInversionModelAlgorithm(RsGeochemAlgorithm):
    ALGORITHM_ID = 'traininversionmodel'
    DISPLAY_NAME = 'Train inversion model (CNN, MLR, PLSR, random forest)'
    GROUP_ID = 'inversion'
    REQUIRES = ('onnx', 'sklearn', 'skl2onnx')
    TAGS = ('cnn', 'convolutional neural network', 'regression', 'onnx', 'pls', 'random forest',
            'rare earth', 'inversion', 'gf-2', 'rpd')
    HELP = (
        'Trains a model that predicts element content from band values - the CNN of Cheng et al. (2023) '
        'and, for comparison, multiple linear regression, PLS regression and random forest - reports its '
        'accuracy and writes it as an ONNX file for "Apply inversion model".\n'
        'Use it on the output of "Surface-to-surface sample set". Give the Samples, the Target field (e.g. '
        'the kriged content) and the Feature fields in the order of the raster bands (any number: 4 GF-2 '
        'bands, a 12-band Sentinel-2 stack, 200 hyperspectral bands), and the Target units (e.g. "% '
        'RE2O3": the map is then named "RE2O3 predicted (%)"). Model type "Compare all" trains every model '
        'on the same split and writes the best by test RMSE. Train/test split "Spatial blocks" keeps '
        'neighbouring, nearly identical samples out of the test set; "Random" is the paper\'s 2:1 split '
        '(Test fraction 1/3). Tick Refit the written model on all samples to fit it again on every sample '
        'once the split has measured its accuracy.\n'
        'Outputs: the Trained model (ONNX: raw band values in, target units out, with metadata: feature '
        'order, normalisation, target, metrics, split, architecture), an HTML report (comparison table, '
        'predicted-against-measured plots, CNN loss, split map), the metrics as numbers (train and test '
        'R², RMSE, RPD, RPIQ, bias) and the written model type. The paper reports train R² 0.95 / RPD 4.65 '
        'and test R² 0.91 / RPD 3.33, and takes R² ≥ 0.9 with RPD ≥ 3 as a good model.\n'
        'Method details. CNN after Cheng et al. (2023): the feature values are tiled into a square matrix '
        '(paper: the 4 band values copied 4 times into 4 × 4, each row b1..b4), then two 2 × 2 '
        'convolutions with ReLU, each followed by 2 × 2 max pooling, a fully connected layer with ReLU, '
        'dropout (keep probability 0.7) and one output; learning rate 0.001, 5000 iterations (all the '
        'paper\'s). Any number of features (our rule, for hyperspectral or SAR + optical stacks): the '
        'matrix is the smallest square whose side is a multiple of 4 (so the two poolings divide it '
        'exactly) that holds every feature once, filled row by row with the features repeated cyclically: '
        '1-16 features 4 × 4, 17-64 8 × 8, 65-144 12 × 12, 145-256 (e.g. 200 bands) 16 × 16; a 12-band '
        'Sentinel-2 stack fills 4 × 4 with bands 1-12 then 1-4. Our choices where the paper gives none: 16 '
        'and 32 filters, 64 hidden units, batches of 64, features and target standardised with the '
        'training mean and SD, He initialisation, the Adam optimiser, and the mean squared error as the '
        'loss (the paper names softmax cross-entropy, which has no meaning for one continuous output). '
        'Trained in numpy, no deep-learning framework needed. Baselines (scikit-learn, exported with '
        'skl2onnx): PLS components by 5-fold cross-validation unless given. Spatial blocks: squares of '
        'Block size (map units) go wholly to train or test. The written model is the one fitted on the '
        'training samples, so its metrics describe it; refitted on all samples, the metrics stay the '
        'split\'s and the model\'s metadata says so. The other models of "Compare all" are only reported '
        '(train one alone to keep it). Metrics: R², RMSE (target units), RPD = SD/RMSE, RPIQ = IQR/RMSE, '
        'bias = mean(predicted - measured). Samples with NULL values are skipped and counted; at least the '
        'number of features + 2 samples are needed; a constant target or feature is an error.')

    INPUT = 'INPUT'
    TARGET = 'TARGET'
    FEATURES = 'FEATURES'
    TARGET_UNITS = 'TARGET_UNITS'
    MODEL = 'MODEL'
    SPLIT = 'SPLIT'
    TEST_FRACTION = 'TEST_FRACTION'
    BLOCK_SIZE = 'BLOCK_SIZE'
    SEED = 'SEED'
    ITERATIONS = 'ITERATIONS'
    LEARNING_RATE = 'LEARNING_RATE'
    KEEP_PROBABILITY = 'KEEP_PROBABILITY'
    BATCH_SIZE = 'BATCH_SIZE'
    PLS_COMPONENTS = 'PLS_COMPONENTS'
    RF_TREES = 'RF_TREES'
    OUTPUT_MODEL = 'OUTPUT_MODEL'
    OUTPUT_HTML = 'OUTPUT_HTML'
    MODEL_TYPE = 'MODEL_TYPE'
    REFIT_ALL = 'REFIT_ALL'
    N_TRAIN = 'N_TRAIN'
    N_TEST = 'N_TEST'

    def initAlgorithm(self, config=None):
        number = QgsProcessingParameterNumber
        self.add(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr('Samples'), [compat.SOURCE_POINTS]),
            'Point layer with the target and feature fields, e.g. the output of "Surface-to-surface '
            'sample set".')
        self.add(QgsProcessingParameterField(
            self.TARGET, self.tr('Target field'), parentLayerParameterName=self.INPUT,
            type=QgsProcessingParameterField.DataType.Numeric),
            'Numeric field to predict, e.g. the kriged RE2O3 content.')
        self.add(QgsProcessingParameterField(
            self.FEATURES, self.tr('Feature fields (in the order of the raster bands)'),
            parentLayerParameterName=self.INPUT, type=QgsProcessingParameterField.DataType.Numeric,
            allowMultiple=True),
            'Numeric fields the model learns from, in the order given: this becomes the model\'s '
            'input order, so applying the model needs the raster bands in the same order. '
            'The CNN takes any number of features (tiled as the help says).')
        self.add(QgsProcessingParameterString(
            self.TARGET_UNITS, self.tr('Target units'), '', optional=True),
            'Units of the target, e.g. "% RE2O3" or "mg/kg"; stored in the model and the report.')
        self.add(QgsProcessingParameterEnum(
            self.MODEL, self.tr('Model type'), [label for _, label in MODEL_CHOICES], defaultValue=0),
            'The paper\'s CNN, a baseline, or all of them on the same split (the best by test RMSE '
            'is written).')
        self.add(QgsProcessingParameterEnum(
            self.SPLIT, self.tr('Train/test split'), list(SPLIT_CHOICES), defaultValue=0),
            'Random, or spatial blocks (whole squares of Block size map units go to train or test).')
        self.add(number(self.TEST_FRACTION, self.tr('Test fraction'), number.Type.Double, 1 / 3, False,
                        0.05, 0.9),
                 'Share of the samples held out for testing; 1/3 is the paper\'s 2:1 split. With '
                 'spatial blocks, blocks are added until at least this share is reached.')
        self.add(number(self.BLOCK_SIZE, self.tr('Block size (map units)'), number.Type.Double, 0.0,
                        False, 0.0),
                 'Side of the square blocks of the spatial split, in the layer\'s map units (metres '
                 'for a projected CRS); choose at least the range of spatial correlation (see '
                 '"Variogram"). 0: one fifth of the longer side of the samples\' extent.')
        self.add(number(self.SEED, self.tr('Random seed'), number.Type.Integer, 1, False, 0, 2 ** 31 - 1),
                 'Seed of the split, the CNN\'s weights, dropout and batches, PLS folds and the '
                 'forest: the same seed gives the same model.')
        self.add(number(self.ITERATIONS, self.tr('CNN iterations'), number.Type.Integer, 5000, False,
                        1, 1000000),
                 'Mini-batch updates of the CNN (paper: 5000).', advanced=True)
        self.add(number(self.LEARNING_RATE, self.tr('CNN learning rate'), number.Type.Double, 0.001,
                        False, 1e-6, 1.0),
                 'Adam step size (paper: 0.001).', advanced=True)
        self.add(number(self.KEEP_PROBABILITY, self.tr('CNN dropout keep probability'),
                        number.Type.Double, 0.7, False, 0.05, 1.0),
                 'Probability that a unit of the fully connected layer is kept while training '
                 '(paper: 0.7); 1 switches dropout off.', advanced=True)
        self.add(number(self.BATCH_SIZE, self.tr('CNN batch size'), number.Type.Integer, 64, False,
                        1, 100000),
                 'Samples per mini-batch (all samples when larger than the training set).',
                 advanced=True)
        self.add(number(self.PLS_COMPONENTS, self.tr('PLS components'), number.Type.Integer, 0, False,
                        0, 100),
                 'Number of PLS components; 0 chooses 1..10 by 5-fold cross-validation on the '
                 'training samples.', advanced=True)
        self.add(number(self.RF_TREES, self.tr('Random forest trees'), number.Type.Integer, 100, False,
                        1, 5000),
                 'Number of trees of the random forest.', advanced=True)
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, self.tr('Trained model (ONNX)'), 'ONNX models (*.onnx)'),
            'The trained model as ONNX with rsgeochem metadata, for "Apply inversion model".')
        self.add(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr('Training report'), 'HTML files (*.html)'),
            'HTML report: accuracy table, predicted-vs-measured plots, CNN loss, split map.')
        self.add(QgsProcessingParameterBoolean(
            self.REFIT_ALL, self.tr('Refit the written model on all samples'), False),
            'After the train/test evaluation, fit the written model type again on every sample (train '
            'and test) and write that model: more data for the map. Its reported metrics remain those '
            'of the split, which measured how well this kind of model predicts unseen samples.')
        for side in ('TRAIN', 'TEST'):
            for suffix, _, label in METRIC_OUTPUTS:
                self.addOutput(QgsProcessingOutputNumber(f'{side}_{suffix}',
                                                         self.tr(f'{side.lower()} {label}')))
        self.addOutput(QgsProcessingOutputNumber(self.N_TRAIN, self.tr('Training samples')))
        self.addOutput(QgsProcessingOutputNumber(self.N_TEST, self.tr('Test samples')))
        self.addOutput(QgsProcessingOutputString(self.MODEL_TYPE, self.tr('Written model type')))

    def read_samples(self, parameters, context, feedback):
        source, target, features = target_and_features(self, parameters, context, 'to predict',
                                                       every_numeric_by_default=False)
        samples = read_sample_points(source, list(dict.fromkeys([target, *features])), self.INPUT,
                                     context, feedback)
        return samples, target, features, source.sourceCrs()

    def model_types(self, parameters, context):
        return MODEL_CHOICES[self.parameterAsEnum(parameters, self.MODEL, context)][0]

    def make_split(self, parameters, context, samples, n_features, feedback, crs):
        fraction = self.parameterAsDouble(parameters, self.TEST_FRACTION, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        if self.parameterAsEnum(parameters, self.SPLIT, context) == 0:
            split = splits.random_split(len(samples), fraction, seed)
            key = self.TEST_FRACTION
        else:
            size = self.parameterAsDouble(parameters, self.BLOCK_SIZE, context)
            size = size or splits.default_block_size(samples.x, samples.y)
            units = 'degrees (the layer\'s CRS is geographic)' if crs.isGeographic() else 'map units'
            feedback.pushInfo(f'Spatial blocks of {size:g} {units}.')
            extent = max(np.ptp(samples.x), np.ptp(samples.y))
            if crs.isGeographic() and size >= extent:
                raise InputError(f'the layer\'s CRS ({crs.authid()}) is geographic, so the block size is '
                                 f'in degrees: {size:g} covers the samples\' whole extent ({extent:.3g} '
                                 'degrees). Give it in degrees or reproject the layer to a projected CRS '
                                 '(metres).', self.BLOCK_SIZE)
            split = splits.spatial_block_split(samples.x, samples.y, size, fraction, seed,
                                               self.BLOCK_SIZE)
            key = self.BLOCK_SIZE
        return split.check(n_features + 2, key)

    def warn_pls_components(self, parameters, context, model_types, n_features, feedback):
        requested = self.parameterAsInt(parameters, self.PLS_COMPONENTS, context)
        if 'plsr' in model_types and requested > n_features:
            feedback.pushWarning(f'{self.PLS_COMPONENTS}: {requested} components asked for, but PLS has at '
                                 f'most one per feature: {n_features} are used.')

    def options(self, parameters, context):
        value = self.parameterAsInt
        return training.TrainingOptions(
            cnn=CnnConfig(iterations=value(parameters, self.ITERATIONS, context),
                          learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
                          keep_prob=self.parameterAsDouble(parameters, self.KEEP_PROBABILITY, context),
                          batch_size=value(parameters, self.BATCH_SIZE, context)),
            pls_components=value(parameters, self.PLS_COMPONENTS, context),
            rf_trees=value(parameters, self.RF_TREES, context),
            seed=value(parameters, self.SEED, context))

    def execute(self, parameters, context, feedback):
        samples, target_name, feature_names, crs = self.read_samples(parameters, context, feedback)
        target = samples.values[target_name]
        features = np.column_stack([samples.values[name] for name in feature_names])
        training.check_samples(features, target, feature_names, target_name)
        model_types = self.model_types(parameters, context)
        split = self.make_split(parameters, context, samples, len(feature_names), feedback, crs)
        self.warn_pls_components(parameters, context, model_types, len(feature_names), feedback)
        feedback.pushInfo(f'{split.train.size} training and {split.test.size} test samples.')

        progress, cancel = progress_callbacks(feedback, 0, 90)
        results = training.train_models(features, target, split, model_types,
                                        self.options(parameters, context), progress, cancel)
        check_cancel(cancel)  # nothing is written after a cancel
        written = training.best_by_test_rmse(results)
        for result in results:
            feedback.pushInfo(f'{result.model_type}: train R² {result.train.r2:.3f} RMSE '
                              f'{result.train.rmse:.4g}; test R² {result.test.r2:.3f} RMSE '
                              f'{result.test.rmse:.4g} RPD {result.test.rpd:.2f}')
        units = self.parameterAsString(parameters, self.TARGET_UNITS, context)
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        data = {'x': samples.x, 'y': samples.y, 'target': target, 'feature_names': feature_names,
                'target_field': target_name, 'target_units': units}
        notes = [f'Skipped samples: {samples.skipped_text()}.'] if samples.skipped_text() else []
        refit = self.parameterAsBool(parameters, self.REFIT_ALL, context)
        saved = written
        if refit:
            feedback.pushInfo(f'Refitting the {written.model_type} on all {len(target)} samples.')
            saved = training.refit_on_all_samples(written, features, target,
                                                  self.options(parameters, context),
                                                  progress_callbacks(feedback, 90, 99)[0], cancel)
            check_cancel(cancel)  # before anything is written
        write_training_report(html_path, f'Inversion model for {target_name}', data, results,
                              written, split, notes)
        # the model last: it only appears when everything else has succeeded
        model_path = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        training.save_onnx(training.model_proto(saved, feature_names, target_name, units, split, refit),
                           model_path)
        feedback.setProgress(100)
        outputs = {self.OUTPUT_MODEL: model_path, self.OUTPUT_HTML: html_path,
                   self.MODEL_TYPE: written.model_type,
                   self.N_TRAIN: int(split.train.size), self.N_TEST: int(split.test.size)}
        for side, metrics in (('TRAIN', written.train), ('TEST', written.test)):
            for suffix, attribute, _ in METRIC_OUTPUTS:
                outputs[f'{side}_{suffix}'] = getattr(metrics, attribute)
        return outputs
