"""Regression model of a Laplacian-pyramid fusion: optional K-means clusters of the image and a
least-squares multiple linear regression Geo_L ~ MS_L, globally or per cluster (Remote Sens. 2023,
15, 1993, §2.3: "global" and "local" regression). Fitted on a pixel sample, applied per block."""
from dataclasses import dataclass, field

import numpy as np

from .dependencies import require
from .errors import InputError

# a regression whose R² on the low frequencies stays below this explains (almost) nothing
LOW_R2 = 0.05
# smallest/largest singular value of the standardised design below which bands are collinear
COLLINEAR = 1e-6
KMEANS_FIT_PIXELS = 50_000


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
        distance = scaled @ (-2.0 * centres.T)
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


def fit_regression(low, target, cluster=0):
    """Least-squares fit target ~ 1 + low (Remote Sens. 2023, 15, 1993, eq. 5) with R² on the fit
    sample; `low` (n, bands), `target` (n,)."""
    design = np.column_stack([np.ones(len(low)), low]).astype(np.float64)
    solution, *_ = np.linalg.lstsq(design, target.astype(np.float64), rcond=None)
    residual = target - design @ solution
    total = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else float('nan')
    return Fit(cluster, len(target), r2, float(solution[0]), tuple(float(c) for c in solution[1:]))


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
              clusters_key='CLUSTERS', data_key=None):
    """Fit the fusion regression on a sample dict with 'pixels', 'low' (n, bands) and 'target_low'.

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
    global_fit = fit_regression(low, target)
    warnings = []
    if global_fit.explains_nothing:
        warnings.append(f'the global regression explains nothing (R² = {global_fit.r2:.3f} < {LOW_R2}): '
                        'the image bands do not predict the smoothed geochemical grid, so the '
                        'injected detail is not meaningful.')
    if clusters < 2:
        return FusionModel(tuple(band_names), global_fit, [global_fit], warnings=warnings)
    if len(np.unique(pixels, axis=0)) < clusters:
        raise InputError(f'the image has fewer distinct pixel values than {clusters} clusters; choose '
                         'fewer clusters.', clusters_key)
    kmeans, mean, scale = fit_clusters(pixels, clusters, seed)
    labels = kmeans.predict(((pixels - mean) / scale).astype(np.float32))
    fits = []
    for cluster in range(clusters):
        inside = labels == cluster
        count = int(inside.sum())
        reason = None
        if count < needed:
            reason = f'too few pixels ({count} < {needed})'
        else:
            reason = _design_rank_problem(low[inside], band_names)
        if reason:
            fit = Fit(cluster + 1, count, global_fit.r2, global_fit.intercept, global_fit.coefficients,
                      f'global fit used: {reason}')
            warnings.append(f'cluster {cluster + 1}: {reason}; it uses the global regression.')
        else:
            fit = fit_regression(low[inside], target[inside], cluster + 1)
            if fit.explains_nothing:
                warnings.append(f'cluster {cluster + 1}: the regression explains nothing '
                                f'(R² = {fit.r2:.3f} < {LOW_R2}); its injected detail is not meaningful.')
        fits.append(fit)
    return FusionModel(tuple(band_names), global_fit, fits, kmeans, mean, scale, warnings)
