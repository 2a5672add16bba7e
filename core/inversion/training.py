"""Training inversion models on a sample table: input checks, fitting the CNN and the baselines on
one train/test split, metrics, choice of the best model and the ONNX file with its metadata.

The parameter keys named in errors are those of the traininversionmodel algorithm.
"""
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..dependencies import require
from ..errors import InputError
from ..metrics import regression_metrics
from ..raster.blockio import check_cancel
from . import baselines
from .cnn import CnnConfig, train_cnn
from .onnx_metadata import write_metadata

INPUT = 'INPUT'
TARGET = 'TARGET'
FEATURES = 'FEATURES'
MODEL = 'MODEL'
SPLIT = 'SPLIT'

MODEL_TYPES = ('cnn', 'mlr', 'plsr', 'rf')
MODEL_NAMES = {'cnn': 'CNN (Cheng et al. 2023)', 'mlr': 'Multiple linear regression',
               'plsr': 'PLS regression', 'rf': 'Random forest'}


@dataclass(frozen=True)
class TrainingOptions:
    cnn: CnnConfig = field(default_factory=CnnConfig)
    pls_components: int = 0   # 0: by 5-fold cross-validation
    rf_trees: int = 100
    seed: int = 0


@dataclass
class TrainedModel:
    model: object               # CnnModel or SklearnModel: predict(features), to_onnx()
    train_predicted: np.ndarray
    test_predicted: np.ndarray
    train: object               # RegressionMetrics
    test: object
    feature_range: dict = None  # {'min': [...], 'max': [...]} of the training features

    @property
    def model_type(self):
        return self.model.model_type

    def metrics_dict(self):
        return {'train': self.train.as_dict(), 'test': self.test.as_dict()}


def check_samples(features, target, feature_names, target_name):
    """InputError naming the parameter at fault for samples no model can learn from."""
    n, n_features = features.shape
    if len(set(feature_names)) != len(feature_names):
        raise InputError('a field is listed twice; list each feature field once.', FEATURES)
    if target_name in feature_names:
        raise InputError(f'the target field "{target_name}" is also a feature; remove it from the '
                         'feature fields.', FEATURES)
    if n < n_features + 2:
        raise InputError(f'{n} usable samples (no NULL values) for {n_features} features; at least '
                         f'{n_features + 2} are needed, and many more for a reliable model.', INPUT)
    if np.ptp(target) == 0:
        raise InputError(f'the target field "{target_name}" has the same value ({target[0]:g}) in '
                         'every sample; nothing to learn. Choose another field.', TARGET)
    constant = [name for name, column in zip(feature_names, features.T) if np.ptp(column) == 0]
    if constant:
        raise InputError(f'feature field(s) {", ".join(constant)} have one value in every sample '
                         'and carry no information; remove them.', FEATURES)


def fit(model_type, features, target, options, progress=None, cancel=None):
    """Fit one model type on training data."""
    if model_type == 'cnn':
        return train_cnn(features, target, options.cnn, progress, cancel)
    if model_type == 'mlr':
        return baselines.fit_mlr(features, target)
    if model_type == 'plsr':
        return baselines.fit_plsr(features, target, options.pls_components, options.seed)
    return baselines.fit_rf(features, target, options.rf_trees, options.seed, progress, cancel)


def train_models(features, target, split, model_types, options, progress=None, cancel=None):
    """Fit every model type on split.train and score it on both sides of the split."""
    train_x, train_y = features[split.train], target[split.train]
    for part in (train_x, train_y[:, None]):
        if np.any(np.ptp(part, axis=0) == 0):
            raise InputError('a feature or the target is constant within the training samples of '
                             'this split; change the split (seed, test fraction, block size).', SPLIT)
    options = replace(options, cnn=replace(options.cnn, seed=options.seed))
    results = []
    for position, model_type in enumerate(model_types):
        def part_progress(fraction, position=position):
            if progress is not None:
                progress((position + fraction) / len(model_types))
        check_cancel(cancel)
        model = fit(model_type, train_x, train_y, options, part_progress, cancel)
        check_cancel(cancel)
        train_predicted = model.predict(train_x)
        test_predicted = model.predict(features[split.test])
        results.append(TrainedModel(model, train_predicted, test_predicted,
                                    regression_metrics(train_y, train_predicted),
                                    regression_metrics(target[split.test], test_predicted),
                                    feature_range(train_x)))
        part_progress(1.0)
    return results


def feature_range(features):
    """The range of each feature a model is fitted on (metadata `feature_range`)."""
    return {'min': features.min(axis=0).tolist(), 'max': features.max(axis=0).tolist()}


def best_by_test_rmse(results):
    return min(results, key=lambda result: result.test.rmse)


def refit_on_all_samples(result, features, target, options, progress=None, cancel=None):
    """`result` with its model type fitted again, with the same settings, on every sample: once the
    split has measured how well this kind of model predicts unseen samples, the model that maps the
    image may learn from all of them. The metrics stay those of the split (the refitted model has no
    held-out samples left to be scored on)."""
    options = replace(options, cnn=replace(options.cnn, seed=options.seed))
    return replace(result, model=fit(result.model_type, features, target, options, progress, cancel),
                   feature_range=feature_range(features))


def model_proto(result, feature_names, target_field, target_units, split, refitted=False):
    """The ONNX model of a trained result with every rsgeochem.* metadata key of the contract;
    `refitted`: the model was refitted on all samples after the split (said in the split's entry)."""
    model = result.model
    onnx_model = model.to_onnx()
    normalisation = {'mean': model.x_mean.tolist(), 'scale': model.x_scale.tolist()}
    if model.model_type == 'cnn':
        normalisation.update(target_mean=model.y_mean, target_scale=model.y_scale)
    architecture = model.config.architecture(model.side) if model.model_type == 'cnn' else model.architecture
    return write_metadata(onnx_model, {
        'features': list(feature_names), 'input_layout': model.input_layout, 'patch_size': 1,
        'normalisation': normalisation, 'feature_range': result.feature_range,
        'target_field': target_field, 'target_units': target_units,
        'model_type': model.model_type, 'architecture': architecture,
        'split': dict(split.description, refit_on_all_samples=bool(refitted)),
        'metrics': result.metrics_dict()})


def save_onnx(proto, path):
    """Write the model under a temporary name and move it into place, so a failure leaves nothing."""
    onnx = require('onnx')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + '.part')
    try:
        onnx.save(proto, str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return str(path)
