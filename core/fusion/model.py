"""Regression model of a Laplacian-pyramid fusion: optional K-means clusters of the image and a
multiple linear regression Geo_L ~ MS_L, globally or per cluster (Remote Sens. 2023, 15, 1993,
Eqs. 1-3 and §4.3: "global" and "local" regression). Fitted on a pixel sample, applied per block.

Three estimators:

* 'ols': ordinary least squares, the paper's.
* 'noise': ridge regression whose penalty is the image noise, b = (XcᵀXc + n·diag(σ²))⁻¹·Xcᵀyc
  (Xc, yc centred). The slopes fitted on the smooth low frequencies multiply the image detail
  MS_H, which carries each band's own noise; least squares on inputs with additive noise of
  variance σ² is, in expectation, exactly this Tikhonov/ridge problem (Bishop 1995, Neural
  Comput. 7(1), "Training with noise is equivalent to Tikhonov regularization"). With collinear
  bands (e.g. Sentinel-2 B2/B3, r = 0.96) least squares gives large opposite-sign slopes that
  amplify the noise of the injected detail; the noise penalty shrinks them towards their common
  direction. σ per band is Donoho's robust estimate, MAD/0.6745 of the finest pyramid detail
  (Donoho & Johnstone 1994, Biometrika 81(3)), rescaled to white-noise units (core.fusion.pyramid).
  Cross-validation on the low frequencies cannot choose this penalty (it selects ≈ 0: the smooth
  relation is well determined); the harm appears only where the slopes meet the noisy detail.
* 'nonlinear' (ours, the default): a ridge regression on nonlinear features of the bands (Basis:
  a quadratic response surface plus a piecewise-linear spline per band), fitted so that the
  low frequency of the features predicts the grid's low frequency: the features are transformed
  per pixel first and smoothed afterwards, so the fit describes how smoothed pixel values relate
  to the grid (mixed pixels included) rather than a function of smoothed bands, which is what a
  nonlinear model applied back to single pixels needs (the scale problem of regression trees
  trained on cell means, as in pyDMS, Gao et al. 2012, Remote Sens. 4(11)). The model predicts
  the content of every pixel, F(MS); see core.fusion.pipeline for how F enters the fused map.
  The ridge penalty NONLINEAR_PENALTY (on standardised features, times n) is our choice, set on
  the Wald benchmarks of bench/bench_fusion.py (Sentinel-2 and Landsat 5): as for 'noise', a
  validation on the low frequencies would choose none.

With 'nonlinear' in coherent mode the default also fits a LocalModel, a geographically weighted
linear regression on the bands and their 5×5-smoothed values fitted at every coarse cell, and
predicts the average of the two (LOCAL_SHARE): the band-content relation may then change across
the map, as with pyDMS's moving windows, and the two models' errors partly cancel. Its bandwidth
and penalty come from leave-one-out cross-validation on the cells (valid there, unlike for the
nonlinear features: linear predictors average over a cell exactly). The coefficients live on the
coarse grid and are interpolated at each pixel's position, so the fit is made once from cell
statistics and applied tile by tile."""
from dataclasses import dataclass, field

import numpy as np

from ..dependencies import require
from ..errors import InputError
from ..linalg import matmul, single_threaded_blas
from . import pyramid

# a regression whose R² on the low frequencies stays below this explains (almost) nothing
LOW_R2 = 0.05
# smallest/largest singular value of the standardised design below which bands are collinear
COLLINEAR = 1e-6
KMEANS_FIT_PIXELS = 50_000
ESTIMATORS = ('ols', 'noise', 'nonlinear')
NONLINEAR_KNOTS = (0.1, 0.25, 0.5, 0.75, 0.9)   # quantiles of each band where a hinge starts
NONLINEAR_PENALTY = 0.03
MIN_CELLS_PER_FEATURE = 20   # coarse cells the nonlinear regression needs per feature
# weight of the local regression in the average with the global nonlinear one: an equal-weight
# model average (ours, not fitted). Sensitivity on the Wald sets of bench/bench_fusion.py (RMSE over
# pyDMS's best, Sentinel-2 B4 / Landsat B7): 0.3 → 0.80 / 0.95, 0.5 → 0.78 / 0.94, 0.7 → 0.79 / 0.94,
# the local regression alone 0.84 / 0.96
LOCAL_SHARE = 0.5


@dataclass(frozen=True)
class Fit:
    """One regression Geo_L = intercept + Σ coefficients·MS_L (units: geochemical units and
    geochemical units per image unit). cluster 0 is the global regression."""
    cluster: int
    n: int
    r2: float
    intercept: float
    coefficients: tuple
    status: str = 'fitted'

    @property
    def explains_nothing(self):
        return not self.r2 >= LOW_R2


@dataclass
class FusionModel:
    band_names: tuple
    global_fit: Fit
    fits: list                      # one Fit per cluster (cluster 1..N), or [global_fit]
    kmeans: object = None           # sklearn KMeans on standardised bands, None in global mode
    mean: np.ndarray = None         # standardisation of the bands for K-means
    scale: np.ndarray = None
    warnings: list = field(default_factory=list)
    noise: tuple = None             # noise SD per band (image units) of the 'noise' estimator
    basis: object = None            # Basis of the 'nonlinear' estimator (coefficients are per feature)
    local: object = None            # LocalModel blended with the global one (LOCAL_SHARE), or None

    @property
    def feature_names(self):
        """Names of the regression's predictors: the bands, or the nonlinear features."""
        return self.band_names if self.basis is None else self.basis.names(self.band_names)

    def predict(self, bands, labels, local_inputs=None):
        """F = intercept + Σ θ_j·φ_j(bands) per pixel (float32, cluster coefficients by `labels`), the
        features made one at a time so a block holds one extra array, not one per feature. With a
        local model, `local_inputs` = (context, rows, columns) of LocalModel.predict, and F is the
        average of the global and the local prediction (LOCAL_SHARE)."""
        def per_pixel(values):
            return values[0] if len(values) == 1 else values[labels]
        slopes = self.slopes
        fitted = np.zeros(bands.shape[1:], np.float32)
        fitted += per_pixel(self.intercepts)
        for index, feature in enumerate(self.basis.features(bands)):
            fitted += per_pixel(slopes[:, index]) * feature
        if self.local is None:
            return fitted
        local = self.local.predict(bands, *local_inputs)
        return (1.0 - LOCAL_SHARE) * fitted + LOCAL_SHARE * local

    @property
    def intercepts(self):
        return np.array([fit.intercept for fit in self.fits], dtype=np.float32)

    @property
    def slopes(self):
        return np.array([fit.coefficients for fit in self.fits], dtype=np.float32)

    def labels(self, bands):
        """Cluster index 0..N-1 of each pixel of `bands` (bands, ...) float32; 0 in global mode.

        Nearest K-means centre in standardised units, as KMeans.predict, written as one matrix
        product (argmin |c|² − 2·x·c) because predict on every block pays input validation and
        nests its own thread pool inside our block workers."""
        shape = bands.shape[1:]
        if self.kmeans is None:
            return np.zeros(shape, dtype=np.intp)
        centres = self.kmeans.cluster_centers_.astype(np.float32)
        pixels = bands.reshape(len(bands), -1).T
        scaled = (pixels - self.mean.astype(np.float32)) / self.scale.astype(np.float32)
        distance = matmul(scaled, -2.0 * centres.T)
        distance += np.sum(centres ** 2, axis=1)
        return np.argmin(distance, axis=1).reshape(shape)


def _design_rank_problem(low, band_names):
    """None when the standardised bands are linearly independent, else a description."""
    spread = low.std(axis=0)
    constant = [name for name, s in zip(band_names, spread) if not s > 0]
    if constant:
        return f'band(s) {", ".join(constant)} are constant'
    z = (low - low.mean(axis=0)) / spread
    _, singular, vectors = np.linalg.svd(z, full_matrices=False)
    if singular[-1] < COLLINEAR * singular[0] * np.sqrt(len(low)) or singular[-1] == 0:
        involved = [band_names[i] for i in np.flatnonzero(np.abs(vectors[-1]) > 0.1)]
        return f'bands {", ".join(involved)} are collinear (one is a linear combination of the others)'
    return None


def fit_regression(low, target, cluster=0, noise=None):
    """Fit target ~ 1 + low with R² on the fit sample; `low` (n, bands), `target` (n,).

    noise None: least squares (the regression of Remote Sens. 2023, 15, 1993). noise (bands,): ridge
    with penalty n·diag(noise²) on the slopes, intercept unpenalised (module docstring; image units)."""
    low = np.asarray(low, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if noise is None:
        design = np.column_stack([np.ones(len(low)), low])
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        intercept, slopes = solution[0], solution[1:]
    else:
        mean, target_mean = low.mean(axis=0), target.mean()
        centred = low - mean
        gram = centred.T @ centred + len(low) * np.diag(np.square(noise))
        slopes = np.linalg.solve(gram, centred.T @ (target - target_mean))
        intercept = target_mean - mean @ slopes
    residual = target - intercept - low @ slopes
    total = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else float('nan')
    return Fit(cluster, len(target), r2, float(intercept), tuple(float(c) for c in slopes))


def _upper_pairs(count):
    """Index pairs (i, j), i <= j < count: the entries of a symmetric matrix, diagonal included."""
    return [(i, j) for i in range(count) for j in range(i, count)]


@dataclass(frozen=True)
class Basis:
    """Nonlinear features of B image bands for the 'nonlinear' estimator: z_b = (x_b − mean) / SD,
    the products z_i·z_j of every pair (squares included: a quadratic response surface) and hinges
    max(z_b − k, 0) at each band's NONLINEAR_KNOTS quantiles (a piecewise-linear spline per band,
    as in MARS, Friedman 1991, Ann. Stat. 19(1)); B + B(B+1)/2 + 5B features, no constant."""
    mean: np.ndarray
    scale: np.ndarray
    knots: np.ndarray        # (bands, knots), standardised units

    @classmethod
    def from_pixels(cls, pixels):
        """Standardisation and knots from sampled pixel values (n, bands)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        mean, scale = pixels.mean(axis=0), pixels.std(axis=0)
        scale[scale == 0] = 1.0
        return cls(mean, scale, np.quantile((pixels - mean) / scale, NONLINEAR_KNOTS, axis=0).T)

    def _pairs(self):
        return _upper_pairs(len(self.mean))

    def names(self, band_names):
        names = list(band_names)
        names += [f'{band_names[i]}*{band_names[j]}' for i, j in self._pairs()]
        names += [f'{name}>q{round(100 * q)}' for name in band_names for q in NONLINEAR_KNOTS]
        return tuple(names)

    def features(self, bands):
        """Yield each feature (float32, the shape of one band) of `bands` (B, ...)."""
        shape = (-1,) + (1,) * (bands.ndim - 1)
        z = ((bands - self.mean.reshape(shape).astype(np.float32))
             / self.scale.reshape(shape).astype(np.float32)).astype(np.float32, copy=False)
        yield from z
        for i, j in self._pairs():
            yield z[i] * z[j]
        for band, knots in enumerate(self.knots):
            for knot in knots.astype(np.float32):
                yield np.maximum(z[band] - knot, np.float32(0.0))

    def expand(self, bands):
        """All features of `bands` (B, ...) stacked: (features, ...) float32 (for small samples)."""
        return np.stack(list(self.features(bands)))


def basis_size(band_count):
    """Number of Basis features of `band_count` bands."""
    return band_count + band_count * (band_count + 1) // 2 + len(NONLINEAR_KNOTS) * band_count


def fit_features(features_low, target, cluster=0, penalty=NONLINEAR_PENALTY):
    """Ridge regression target ~ 1 + features on standardised columns with penalty n·`penalty`,
    intercept unpenalised; coefficients back in feature units. `features_low` (n, J)."""
    features_low = np.asarray(features_low, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean, target_mean = features_low.mean(axis=0), target.mean()
    scale = features_low.std(axis=0)
    scale[scale == 0] = 1.0
    standardised = (features_low - mean) / scale
    gram = standardised.T @ standardised + penalty * len(target) * np.eye(len(mean))
    slopes = np.linalg.solve(gram, standardised.T @ (target - target_mean)) / scale
    intercept = target_mean - mean @ slopes
    residual = target - intercept - features_low @ slopes
    total = float(np.sum((target - target_mean) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else float('nan')
    return Fit(cluster, len(target), r2, float(intercept), tuple(float(c) for c in slopes))


def detail_noise(fine_detail):
    """Noise SD per band (image units) from the finest pyramid detail x − lowpass₁(x), (n, bands):
    Donoho's MAD/0.6745, divided by the detail filter's white-noise gain."""
    detail = np.asarray(fine_detail, dtype=np.float64)
    mad = np.median(np.abs(detail - np.median(detail, axis=0)), axis=0)
    return mad / 0.6745 / pyramid.white_noise_gain(1)


def fit_clusters(pixels, clusters, seed):
    """K-means (scikit-learn, k-means++) on standardised band values; returns (kmeans, mean, scale)."""
    cluster_module = require('sklearn.cluster')
    mean = pixels.mean(axis=0)
    scale = pixels.std(axis=0)
    scale[scale == 0] = 1.0
    rng = np.random.default_rng(seed)
    chosen = pixels if len(pixels) <= KMEANS_FIT_PIXELS else \
        pixels[rng.choice(len(pixels), KMEANS_FIT_PIXELS, replace=False)]
    kmeans = cluster_module.KMeans(n_clusters=clusters, n_init=3, random_state=seed)
    kmeans.fit(((chosen - mean) / scale).astype(np.float32))
    return kmeans, mean, scale


def fit_model(sample, band_names, clusters=1, min_pixels=100, seed=1, bands_key='BANDS',
              clusters_key='CLUSTERS', data_key=None, estimator='ols'):
    """Fit the fusion regression on a sample dict with 'pixels', 'low', 'fine_detail' (n, bands),
    'target_low' and 'cluster_pixels' (the values of the bands K-means clusters by), and for the
    'nonlinear' estimator 'basis' (a Basis), 'basis_pixels' (its sample's cluster-band values),
    'basis_low' (n, features) and 'basis_target_low'; `estimator` one of ESTIMATORS (module
    docstring).

    Global regression always; with clusters >= 2 one regression per K-means cluster, falling back
    to the global one (with a warning) where a cluster has fewer than `min_pixels` pixels or
    collinear bands. Raises InputError where the global regression cannot be fitted.
    """
    pixels, low, target = sample['pixels'], sample['low'], sample['target_low']
    bands = len(band_names)
    needed = max(int(min_pixels), 10 * (bands + 1))
    if len(target) < needed:
        raise InputError(f'only {len(target)} sampled pixels have data in the image bands, the '
                         f'geochemical grid and the mask together; at least {needed} are needed: check '
                         'the layers overlap, their nodata and the mask.', data_key)
    problem = _design_rank_problem(low, band_names)
    if problem:
        raise InputError(f'{problem}, so the regression is singular; remove the redundant band(s) '
                         'from the selection.', bands_key)
    noise = detail_noise(sample['fine_detail']) if estimator == 'noise' else None
    basis = sample.get('basis') if estimator == 'nonlinear' else None

    def regression(rows, cluster):
        if basis is not None:
            return fit_features(sample['basis_low'][rows], sample['basis_target_low'][rows], cluster)
        return fit_regression(low[rows], target[rows], cluster, noise)
    global_fit = regression(slice(None), 0)
    warnings = []
    if global_fit.explains_nothing:
        warnings.append(f'the global regression explains nothing (R² = {global_fit.r2:.3f} < {LOW_R2}): '
                        'the image bands do not predict the smoothed geochemical grid, so the '
                        'injected detail is not meaningful.')
    if clusters < 2:
        return FusionModel(tuple(band_names), global_fit, [global_fit], warnings=warnings, noise=noise,
                           basis=basis)
    clustered = sample.get('cluster_pixels', pixels)   # the bands K-means uses (CLUSTER_BANDS)
    if len(np.unique(clustered, axis=0)) < clusters:
        raise InputError(f'the image has fewer distinct pixel values than {clusters} clusters; choose '
                         'fewer clusters.', clusters_key)
    kmeans, mean, scale = fit_clusters(clustered, clusters, seed)
    # the nonlinear regression has its own sample (core.fusion.pipeline.collect_basis_sample)
    if basis is not None:
        clustered = sample['basis_pixels']
    labels = kmeans.predict(((clustered - mean) / scale).astype(np.float32))
    fits = []
    for cluster in range(clusters):
        inside = labels == cluster
        count = int(inside.sum())
        reason = None
        if count < needed:
            reason = f'too few pixels ({count} < {needed})'
        elif basis is None:  # the nonlinear fit's ridge penalty copes with collinear bands
            reason = _design_rank_problem(low[inside], band_names)
        if reason:
            fit = Fit(cluster + 1, count, global_fit.r2, global_fit.intercept, global_fit.coefficients,
                      f'global fit used: {reason}')
            warnings.append(f'cluster {cluster + 1}: {reason}; it uses the global regression.')
        else:
            fit = regression(inside, cluster + 1)
            if fit.explains_nothing:
                warnings.append(f'cluster {cluster + 1}: the regression explains nothing '
                                f'(R² = {fit.r2:.3f} < {LOW_R2}); its injected detail is not meaningful.')
        fits.append(fit)
    return FusionModel(tuple(band_names), global_fit, fits, kmeans, mean, scale, warnings, noise, basis)


# candidate Gaussian bandwidths (coarse cells, doubling) and ridge penalties (times the local weight
# sum) of the local regression; leave-one-out cross-validation on the coarse cells picks one pair.
# A finer grid (1, 1.5, 2, 3, 4 cells) changed the Wald benchmarks' RMSE by at most 0.8 %
LOCAL_BANDWIDTHS = (1.0, 2.0, 4.0)
LOCAL_PENALTIES = (0.001, 0.003, 0.01, 0.03)
LOCAL_TRUNCATE = 3.0          # Gaussian kernel cut at 3 bandwidths
LOCAL_CV_CELLS = 1000           # cells the cross-validation evaluates at most
LOCAL_SOLVE_CELLS = 20_000      # cells whose systems are solved at once


@dataclass(frozen=True)
class LocalModel:
    """Geographically weighted linear regression of the grid on the bands and their pyramid low
    frequency (level 1, a 5×5 smoothing: spatial context), fitted on coarse cell means and applied
    per pixel (Fotheringham, Brunsdon & Charlton 2002, "Geographically Weighted Regression", §2):
    at each coarse cell a ridge regression of the cells around it with Gaussian kernel weights.
    Linear predictors average over a cell exactly, so cell means are the right training data
    whatever the cell's heterogeneity (unlike nonlinear ones), and the coefficients vary smoothly:
    they are interpolated bilinearly from cell centres to each pixel. `coefficients`
    (1 + 2·bands, coarse rows, coarse columns), for the constant then the standardised predictors;
    `position` places a fine pixel in the coarse grid: pixel (i, j)'s centre lies at coarse pixel
    coordinates ((i + ½)·row scale + row shift, (j + ½)·column scale + column shift)."""
    coefficients: np.ndarray
    mean: np.ndarray          # (2·bands,) standardisation of the predictors
    scale: np.ndarray
    position: tuple           # (row scale, row shift, column scale, column shift)
    bandwidth: float
    penalty: float
    cv_rmse: float            # leave-one-out RMSE on the coarse cells (grid units)

    def predict(self, bands, context, rows, columns):
        """Local prediction (float32, rows × columns) at fine pixel rows `rows` and columns `columns`
        (absolute indices in the image grid) from `bands` and `context` (B, rows, columns)."""
        row_scale, row_shift, column_scale, column_shift = self.position
        cell_rows = (np.asarray(rows) + 0.5) * row_scale + row_shift - 0.5     # 0 at a cell's centre
        cell_columns = (np.asarray(columns) + 0.5) * column_scale + column_shift - 0.5
        where = np.meshgrid(cell_rows, cell_columns, indexing='ij')
        ndimage = require('scipy.ndimage')

        def coefficient(index):
            return ndimage.map_coordinates(self.coefficients[index], where, order=1, mode='nearest')
        fitted = coefficient(0)
        predictors = np.concatenate([bands, context])
        for index, values in enumerate(predictors):
            fitted += coefficient(index + 1) * ((values - np.float32(self.mean[index]))
                                                / np.float32(self.scale[index]))
        return fitted


def _gaussian_centre_weight(bandwidth):
    """Weight of a cell in its own 2-D kernel (scipy.ndimage.gaussian_filter's normalised taps)."""
    radius = int(LOCAL_TRUNCATE * bandwidth + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / bandwidth) ** 2)
    return float((taps[radius] / taps.sum()) ** 2)


def _local_systems(predictors, target, bandwidth):
    """Kernel-weighted normal equations of every cell, packed: the Gram entries i <= j (pairs, H, W)
    and the moments (p, H, W) of `predictors` (p, H, W), the constant (1 on valid cells, else 0)
    first, against `target`; one smoothed field at a time, so memory holds the packed fields only."""
    ndimage = require('scipy.ndimage')
    count = len(predictors)
    factors = _upper_pairs(count) + [(i, None) for i in range(count)]    # None: the target
    fields = np.empty((len(factors),) + target.shape)
    for start in range(0, len(factors), count):      # `count` products at a time, one filter call
        chunk = factors[start:start + count]
        products = np.stack([predictors[i] * (target if j is None else predictors[j]) for i, j in chunk])
        ndimage.gaussian_filter(products, (0, bandwidth, bandwidth), output=fields[start:start + len(chunk)],
                                mode='constant', truncate=LOCAL_TRUNCATE)
    pairs = len(factors) - count
    return fields[:pairs], fields[pairs:]


def _systems_at(packed, moments, cells):
    """Gram matrices (n, p, p) and moments (n, p) at flat cell indices `cells` from _local_systems."""
    count = len(moments)
    gram = np.empty((len(cells), count, count))
    flat = packed.reshape(len(packed), -1)
    for index, (i, j) in enumerate(_upper_pairs(count)):
        gram[:, i, j] = gram[:, j, i] = flat[index, cells]
    return gram, moments.reshape(count, -1)[:, cells].T


def _ridge(gram, penalty):
    """The ridge systems: penalty × local weight (Gram[0, 0]) on the slopes, not the intercept."""
    count = gram.shape[-1]
    ridge = np.eye(count)
    ridge[0, 0] = 0.0
    return gram + (penalty * gram[..., :1, :1] + 1e-9) * ridge + 1e-12 * np.eye(count)


def _loo_rmse(gram, moment, design, target, bandwidth, penalty):
    """Leave-one-out RMSE of the local regressions at some cells (their Gram, moments, predictors
    (n, p) and targets): the residual over 1 − the cell's leverage on its own fit, the hat-matrix
    diagonal (Fotheringham et al. 2002, §4.5)."""
    solved = np.linalg.solve(_ridge(gram, penalty), np.stack([moment, design], axis=-1))
    fitted = np.einsum('ni,ni->n', design, solved[..., 0])
    leverage = _gaussian_centre_weight(bandwidth) * np.einsum('ni,ni->n', design, solved[..., 1])
    return float(np.sqrt(np.mean(((target - fitted) / (1.0 - leverage)) ** 2)))


def local_fit_bytes(cells, band_count):
    """Bytes fit_local holds for a grid of `cells` cells and `band_count` bands at most: the packed
    Gram entries and moments of its 1 + 2·bands predictors, the predictors and the coefficients
    (float64), with the solve's chunk."""
    count = 1 + 2 * band_count
    fields = count * (count + 1) // 2 + 3 * count
    return 8 * (cells * fields + min(cells, LOCAL_SOLVE_CELLS) * count * (2 * count + 2))


def fit_local(cell_means, target, position):
    """LocalModel from the cell means of the bands and their context `cell_means` (2·B, H, W) and
    the grid `target` (H, W) (NaN where a cell has no data); None with fewer than 10 valid cells
    per predictor. Memory: local_fit_bytes. The bandwidth and penalty are the pair of
    LOCAL_BANDWIDTHS × LOCAL_PENALTIES with the lowest leave-one-out RMSE on the cells."""
    valid = np.isfinite(target) & np.isfinite(cell_means).all(axis=0)
    count = len(cell_means) + 1
    if valid.sum() < 10 * count:
        return None
    values = cell_means[:, valid]
    mean, scale = values.mean(axis=1), values.std(axis=1)
    scale[scale == 0] = 1.0
    predictors = np.zeros((count,) + target.shape)
    predictors[0] = valid
    predictors[1:, valid] = (values - mean[:, None]) / scale[:, None]
    target = np.where(valid, target, 0.0)
    # cross-validation at evenly spread cells (at most LOCAL_CV_CELLS): its cost stays bounded
    cells = np.flatnonzero(valid.ravel())
    cells = cells[np.unique(np.linspace(0, len(cells) - 1, min(len(cells), LOCAL_CV_CELLS)).astype(int))]
    with single_threaded_blas():   # thousands of tiny systems
        cv, bandwidth, penalty, coefficients = _select_and_fit(predictors, target, cells)
    # cells far from any valid cell get the average coefficients
    far = ~np.isfinite(coefficients).all(axis=0)
    if far.any():
        coefficients[:, far] = np.nanmean(coefficients[:, ~far], axis=1)[:, None]
    return LocalModel(coefficients.astype(np.float32), mean, scale, tuple(position), bandwidth, penalty, cv)


def _select_and_fit(predictors, target, cells):
    """(LOO RMSE, bandwidth, penalty, coefficients (p, H, W)) of the candidate pair with the lowest
    leave-one-out RMSE at `cells` (flat indices), fitted at every cell."""
    design = predictors.reshape(len(predictors), -1)[:, cells].T
    best = None
    for bandwidth in LOCAL_BANDWIDTHS:
        gram, moment = _systems_at(*_local_systems(predictors, target, bandwidth), cells)
        for penalty in LOCAL_PENALTIES:
            cv = _loo_rmse(gram, moment, design, target.ravel()[cells], bandwidth, penalty)
            if best is None or cv < best[0]:
                best = (cv, bandwidth, penalty)
    cv, bandwidth, penalty = best
    packed, moments = _local_systems(predictors, target, bandwidth)
    coefficients = np.empty((len(predictors), target.size))
    for start in range(0, target.size, LOCAL_SOLVE_CELLS):   # bounded temporaries
        chunk = np.arange(start, min(start + LOCAL_SOLVE_CELLS, target.size))
        gram, moment = _systems_at(packed, moments, chunk)
        coefficients[:, chunk] = np.linalg.solve(_ridge(gram, penalty), moment[..., None])[..., 0].T
    coefficients[:, packed[0].ravel() < 1e-6] = np.nan      # no valid cell within the kernel
    return cv, bandwidth, penalty, coefficients.reshape((len(predictors),) + target.shape)
