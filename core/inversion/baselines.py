"""Baseline inversion models the CNN paper lacked: multiple linear regression, partial least squares
regression and random forest (scikit-learn), exported to ONNX with skl2onnx.

MLR and PLSR are scikit-learn pipelines StandardScaler -> model, so the standardisation is part of
the ONNX graph as for the CNN. The random forest takes raw values: trees do not change under a
monotone rescaling, and a float32 rescaling in the graph could move a sample across a split
threshold that scikit-learn evaluates in float64.
"""
from dataclasses import dataclass

import numpy as np

from ..dependencies import require
from ..raster.blockio import check_cancel
from .cnn import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME

ML_OPSET = 3  # ai.onnx.ml domain (TreeEnsembleRegressor, LinearRegressor, Scaler)
PLS_MAX_COMPONENTS = 10
CV_FOLDS = 5
RF_BATCH = 20  # trees grown between two checks for a cancel


@dataclass
class SklearnModel:
    model_type: str       # mlr | plsr | rf
    estimator: object     # fitted scikit-learn estimator or pipeline
    architecture: str
    x_mean: np.ndarray    # standardisation inside the graph (0 and 1 where there is none)
    x_scale: np.ndarray
    input_layout = 'pixel'

    def predict(self, features):
        """(N, F) raw features -> (N,) predictions in target units."""
        return np.asarray(self.estimator.predict(np.asarray(features, np.float64)),
                          dtype=np.float64).reshape(-1)

    def to_onnx(self):
        convert = require('skl2onnx').convert_sklearn
        float_tensor = require('skl2onnx.common.data_types').FloatTensorType
        return convert(self.estimator, 'rsgeochem_' + self.model_type,
                       initial_types=[(INPUT_NAME, float_tensor([None, self.x_mean.size]))],
                       final_types=[(OUTPUT_NAME, float_tensor([None, 1]))],
                       target_opset={'': ONNX_OPSET, 'ai.onnx.ml': ML_OPSET})


def _scaled(model):
    pipeline = require('sklearn.pipeline')
    preprocessing = require('sklearn.preprocessing')
    return pipeline.Pipeline([('scale', preprocessing.StandardScaler()), ('model', model)])


def _scaler_stats(pipeline):
    scaler = pipeline.named_steps['scale']
    return scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)


def fit_mlr(features, target):
    """Ordinary least squares on standardised features."""
    linear = require('sklearn.linear_model')
    pipeline = _scaled(linear.LinearRegression()).fit(features, target)
    return SklearnModel('mlr', pipeline, 'standardise -> ordinary least squares',
                        *_scaler_stats(pipeline))


def pls_components_by_cv(features, target, seed):
    """Number of PLS components (1..min(F, 10)) with the lowest 5-fold cross-validated RMSE."""
    cross_decomposition = require('sklearn.cross_decomposition')
    model_selection = require('sklearn.model_selection')
    folds = model_selection.KFold(min(CV_FOLDS, target.size), shuffle=True, random_state=seed)
    limit = min(features.shape[1], PLS_MAX_COMPONENTS, target.size - target.size // CV_FOLDS - 1)
    errors = []
    for components in range(1, max(limit, 1) + 1):
        predicted = model_selection.cross_val_predict(
            _scaled(cross_decomposition.PLSRegression(components)), features, target, cv=folds)
        errors.append(np.sqrt(np.mean((np.ravel(predicted) - target) ** 2)))
    return int(np.argmin(errors)) + 1


def fit_plsr(features, target, components=0, seed=0):
    """PLS regression (NIPALS) on standardised features; components=0 chooses them by 5-fold CV."""
    cross_decomposition = require('sklearn.cross_decomposition')
    components = min(components or pls_components_by_cv(features, target, seed), features.shape[1])
    pipeline = _scaled(cross_decomposition.PLSRegression(components)).fit(features, target)
    return SklearnModel('plsr', pipeline, f'standardise -> PLS regression, {components} components',
                        *_scaler_stats(pipeline))


def fit_rf(features, target, trees=100, seed=0, progress=None, cancel=None):
    """Random forest regression (Breiman 2001) on raw features, one thread. The trees are grown
    RF_BATCH at a time (warm start: the same forest as grown in one go, scikit-learn draws each
    tree's seed from one stream), checking `cancel` and reporting `progress` in between."""
    ensemble = require('sklearn.ensemble')
    forest = ensemble.RandomForestRegressor(n_estimators=min(trees, RF_BATCH), random_state=seed,
                                            n_jobs=1, warm_start=True)
    while True:
        check_cancel(cancel)
        forest.fit(features, target)
        if progress is not None:
            progress(forest.n_estimators / trees)
        if forest.n_estimators >= trees:
            break
        forest.set_params(n_estimators=min(trees, forest.n_estimators + RF_BATCH))
    n_features = features.shape[1]
    return SklearnModel('rf', forest, f'random forest, {trees} trees, seed {seed}',
                        np.zeros(n_features), np.ones(n_features))
