"""Ordinary and universal (external drift) Kriging: public API.

- `prepare_samples(x, y, z, drift, log_transform)` -> `Samples`: skips and counts unusable values,
  merges duplicate locations (mean), refuses too few samples or a constant field.
- `krige_points(samples, model, x, y, drift, n_neighbours, radius)` -> (prediction, variance) at
  arbitrary points.
- `leave_one_out(samples, model, n_neighbours, radius)` -> `CrossValidation` (per sample and
  ME / RMSE / R² / MSDR).
- `choose_model(samples, experimental, ...)`: fits every candidate variogram model and keeps the
  one with the smallest leave-one-out RMSE.
- `core.geostat.kriging_grid.krige_grid(...)`: onto a raster grid, block-wise, prediction and variance
  GeoTIFFs (with `samples_grid` / `snapped_grid` to define the grid and `DriftRasters`).

Neighbourhoods: `n_neighbours` nearest samples and/or those within `radius` map units of the
target; 0 and 0 use every sample (global Kriging, as gstat's default). Units: predictions in units
of z (its natural logarithm with log_transform, not back-transformed), variances in those units².
"""
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..linalg import single_threaded_blas
from ..metrics import regression_metrics
from ..raster.blockio import check_cancel
from .kriging_system import PAD, KrigingFrame, KrigingSystems, check_global_size
from .variogram import MODELS, bound_warnings, experimental_variogram, fit_variogram

MIN_SAMPLES = 5
GROUP_TARGETS = 64          # targets per factorised system when targets share a neighbour set
SYSTEM_BYTES = 48 * 2 ** 20  # working memory of one batch of systems in krige_points / leave_one_out
POINT_CHUNK = 100_000       # targets whose neighbour sets are searched and grouped at once
DUPLICATE_DECIMALS = 6      # coordinates equal to 1e-6 map units are one location


@dataclass(frozen=True)
class Samples:
    """Usable samples: coordinates, values (log-transformed if asked), external drift values (n, q)."""
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    drift: np.ndarray
    skipped: dict = field(default_factory=dict)  # reason -> count of input samples left out
    merged: int = 0                              # input samples merged into others at the same place

    def __len__(self):
        return len(self.x)

    def notes(self):
        return dropped_notes(self.skipped, self.merged)


def dropped_notes(skipped, merged):
    """'3 with non-finite values; 2 duplicate-location samples merged (mean)' or ''."""
    parts = [f'{count} {reason}' for reason, count in skipped.items() if count]
    if merged:
        parts.append(f'{merged} duplicate-location samples merged (mean)')
    return '; '.join(parts)


def prepare_samples(x, y, z, drift=None, log_transform=False, min_samples=MIN_SAMPLES,
                    field_key='FIELD', input_key='INPUT'):
    """Clean raw samples: drop non-finite values (and values <= 0 under a log transform), average
    samples that share a location, and check that enough distinct, non-constant samples remain."""
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    drift = drift_array(drift, len(z))
    skipped = {}
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    skipped['with non-finite values'] = int(np.count_nonzero(~finite))
    drift_ok = np.all(np.isfinite(drift), axis=1)
    skipped['without drift values (nodata or outside the drift rasters)'] = int(
        np.count_nonzero(finite & ~drift_ok))
    keep = finite & drift_ok
    if log_transform:
        positive = z > 0
        skipped['with values <= 0 (no logarithm)'] = int(np.count_nonzero(keep & ~positive))
        keep &= positive
    x, y, z, drift = x[keep], y[keep], z[keep], drift[keep]
    if log_transform:
        z = np.log(z)
    coordinates = np.round(np.column_stack([x, y]), DUPLICATE_DECIMALS)
    unique, inverse, counts = np.unique(coordinates, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    merged = len(x) - len(unique)
    if merged:
        def mean(values):
            return np.bincount(inverse, weights=values, minlength=len(unique)) / counts
        x, y, z = mean(x), mean(y), mean(z)
        drift = np.column_stack([mean(column) for column in drift.T]) if drift.shape[1] else \
            np.zeros((len(unique), 0))
    if len(x) < min_samples:
        dropped = dropped_notes(skipped, merged) or 'check the layer'
        raise InputError(f'only {len(x)} usable samples at distinct locations (at least {min_samples} are '
                         f'needed); {dropped}. Choose a field with more numeric values or a layer with more '
                         'points.', input_key)
    if np.ptp(z) == 0:
        raise InputError(f'the field has the same value ({z[0]:g}) at every usable sample: a constant '
                         'field cannot be kriged; choose another FIELD.', field_key)
    return Samples(x, y, z, drift, skipped, merged)


def drift_array(drift, n):
    """External drift values as an (n, q) float array (q = 0 without drifts)."""
    return np.zeros((n, 0)) if drift is None else np.asarray(drift, dtype=np.float64).reshape(n, -1)


def is_global(n_samples, n_neighbours, radius):
    return (not n_neighbours or n_neighbours >= n_samples) and not radius


class NeighbourSearch:
    """k nearest samples and/or samples within a radius, in a KrigingFrame's scaled coordinates."""

    def __init__(self, frame, n_neighbours=0, radius=0.0):
        from scipy.spatial import cKDTree
        self.n = len(frame.z)
        self.k = min(int(n_neighbours), self.n) if n_neighbours else self.n
        self.radius = float(radius) / frame.model.range if radius else np.inf
        self.tree = cKDTree(np.column_stack([frame.x, frame.y]))

    def sets(self, tx, ty, exclude=None):
        """Neighbour sets (targets, k) of sample indices, PAD where fewer samples are in range;
        `exclude` (one sample index per target) is left out, as in leave-one-out."""
        points = np.column_stack([tx, ty])
        k = self.k
        if k == self.n and np.isfinite(self.radius):  # radius only: as many as the fullest neighbourhood
            k = max(int(self.tree.query_ball_point(points, self.radius, return_length=True).max()), 1)
        k = min(k + (exclude is not None), self.n)
        _, index = self.tree.query(points, k=list(range(1, k + 1)), distance_upper_bound=self.radius)
        index = np.where(index >= self.n, PAD, index)
        if exclude is not None:
            index[index == np.asarray(exclude)[:, None]] = PAD
        return index


def group_targets(sets, chunk=GROUP_TARGETS):
    """Targets that share a neighbour set share one system: returns (group sets (G, N), target
    indices (G, chunk) padded with -1); a set used by more than `chunk` targets is repeated."""
    ordered = np.sort(sets, axis=1)
    unique, inverse = np.unique(ordered, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind='stable')
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse))[:-1]])
    position = np.arange(len(order)) - starts[inverse[order]]
    keys = inverse[order] * (len(order) // chunk + 1) + position // chunk
    group_keys, group_of_target = np.unique(keys, return_inverse=True)
    width = min(chunk, len(order))
    targets = np.full((len(group_keys), width), PAD, dtype=np.int64)
    targets[group_of_target.ravel(), position % chunk] = order
    return unique[group_keys // (len(order) // chunk + 1)], targets


def solve_groups(frame, group_sets, group_targets_, tx, ty, f0, prediction, variance, cancel=None,
                 dtype=np.float64):
    """Krige targets (scaled coordinates tx, ty, drift rows f0) group by group, in batches that fit
    SYSTEM_BYTES, writing into `prediction` and `variance`."""
    n, width = group_sets.shape[1], group_targets_.shape[1]
    batch = max(1, SYSTEM_BYTES // (8 * 8 * (n * n + n * width)))
    with single_threaded_blas():
        for start in range(0, len(group_sets), batch):
            check_cancel(cancel)
            systems = KrigingSystems(frame, group_sets[start:start + batch])
            targets = group_targets_[start:start + batch]
            used = targets != PAD
            safe = np.where(used, targets, 0)
            p, v = systems.predict(systems.target_matrix(tx[safe], ty[safe], f0[safe], dtype), f0[safe])
            prediction[targets[used]] = p[used]
            variance[targets[used]] = v[used]


def krige_points(samples, model, x, y, drift=None, n_neighbours=0, radius=0.0, cancel=None):
    """Kriging prediction and variance at points (x, y) (map units, same CRS as the samples).

    `drift` holds the external drift values at the points (m, q), the same drifts as
    `samples.drift`. Targets whose neighbourhood is too small to solve get NaN.
    """
    frame = KrigingFrame(model, samples.x, samples.y, samples.z, samples.drift)
    tx, ty = frame.scale_xy(np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel())
    drift = drift_array(drift, len(tx))
    if drift.shape[1] != samples.drift.shape[1]:
        raise InputError(f'{drift.shape[1]} drift values per point for {samples.drift.shape[1]} drifts at '
                         'the samples.', 'DRIFT_RASTERS')
    f0 = frame.drift_matrix(drift)
    if is_global(len(samples), n_neighbours, radius):
        check_global_size(len(samples))
        return krige_global(KrigingSystems(frame, np.arange(len(samples))[None]), tx, ty, f0, cancel=cancel)
    prediction, variance = np.full(len(tx), np.nan), np.full(len(tx), np.nan)
    search = NeighbourSearch(frame, n_neighbours, radius)
    for start in range(0, len(tx), POINT_CHUNK):
        part = slice(start, start + POINT_CHUNK)
        sets, targets = group_targets(search.sets(tx[part], ty[part]))
        solve_groups(frame, sets, targets, tx[part], ty[part], f0[part], prediction[part], variance[part],
                     cancel)
    return prediction, variance


def krige_global(systems, tx, ty, f0, dtype=np.float64, cancel=None):
    """Prediction and variance at scaled coordinates (tx, ty) with drift rows f0 from one system of
    all samples (KrigingSystems of a single set), in chunks of targets sized to SYSTEM_BYTES; variance
    None from a system built without it."""
    prediction = np.empty(len(tx))
    variance = np.empty(len(tx)) if systems.variance else None
    chunk = max(1, SYSTEM_BYTES // (8 * 4 * systems.valid.shape[1]))
    for start in range(0, len(tx), chunk):
        check_cancel(cancel)
        part = slice(start, start + chunk)
        x = systems.target_matrix(tx[None, part], ty[None, part], f0[None, part], dtype)
        p, v = systems.predict(x, f0[None, part])
        prediction[part] = p[0]
        if variance is not None:
            variance[part] = v[0]
    return prediction, variance


@dataclass(frozen=True)
class CrossValidation:
    """Leave-one-out results per sample and their summary (Isaaks & Srivastava 1989, ch. 15)."""
    observed: np.ndarray
    predicted: np.ndarray
    variance: np.ndarray

    @property
    def residual(self):
        """observed - predicted (gstat krige.cv convention)."""
        return self.observed - self.predicted

    @property
    def zscore(self):
        return self.residual / np.sqrt(self.variance)

    def statistics(self):
        """ME = mean residual, RMSE, R² = 1 - SSres/SStot, MSDR = mean(residual² / variance)
        (mean squared deviation ratio, 1 when the variances are right)."""
        ok = np.isfinite(self.predicted) & np.isfinite(self.variance)
        if not ok.any():
            raise InputError('no sample could be predicted from the others (every Kriging system is '
                             'singular); check the variogram (a given SILL and RANGE, in map units) and '
                             'the drift rasters.', 'VARIOGRAM_MODEL')
        residual = self.residual[ok]
        metrics = regression_metrics(self.observed[ok], self.predicted[ok])
        with np.errstate(divide='ignore'):
            msdr = float(np.mean(residual ** 2 / self.variance[ok]))
        return {'n': int(ok.sum()), 'ME': float(residual.mean()), 'RMSE': metrics.rmse, 'R2': metrics.r2,
                'MSDR': msdr}


def leave_one_out(samples, model, n_neighbours=0, radius=0.0, cancel=None):
    """Predict every sample from the others (with the same neighbourhood rules as krige_points).
    The left-out value is a measurement, error included: its variance keeps the measurement error."""
    frame = KrigingFrame(replace(model, error_variance=0.0), samples.x, samples.y, samples.z, samples.drift)
    n = len(samples)
    if is_global(n, n_neighbours, radius):
        check_global_size(n)
        predicted, variance = _global_leave_one_out(frame)
    else:
        search = NeighbourSearch(frame, n_neighbours, radius)
        sets = search.sets(frame.x, frame.y, exclude=np.arange(n))
        predicted, variance = np.full(n, np.nan), np.full(n, np.nan)
        targets = np.arange(n)[:, None]
        solve_groups(frame, sets, targets, frame.x, frame.y, frame.F, predicted, variance, cancel)
    return CrossValidation(samples.z.copy(), predicted, variance)


def _global_leave_one_out(frame):
    """Closed-form leave-one-out of global Kriging (Dubrule 1983): with A the Kriging matrix
    [[Γ, F], [Fᵀ, 0]] and b = [z; 0], z_i - ẑ_(-i) = (A⁻¹b)_i / (A⁻¹)_ii and σ²_(-i) = -1/(A⁻¹)_ii."""
    from scipy.linalg import inv
    n, p = frame.F.shape
    distance = np.hypot(frame.x[:, None] - frame.x[None, :], frame.y[:, None] - frame.y[None, :])
    matrix = np.zeros((n + p, n + p))
    matrix[:n, :n] = frame.model.scaled(distance)
    matrix[:n, n:] = frame.F
    matrix[n:, :n] = frame.F.T
    try:
        inverse = inv(matrix, check_finite=False)
    except np.linalg.LinAlgError as error:
        raise InputError(f'the Kriging system is singular ({error}); check the drift rasters for '
                         'collinear bands.', 'DRIFT_RASTERS') from error
    diagonal = np.diagonal(inverse)[:n]
    weights = inverse[:n, :n] @ frame.z
    return frame.z - weights / diagonal, -frame.variance_scale / diagonal


def choose_model(samples, experimental, candidates=MODELS, weighting='npairs_distance', fit_nugget=True,
                 n_neighbours=0, radius=0.0, cancel=None, error_variance=0.0):
    """Fit each candidate model (with the measurement-error variance, see fit_variogram) and keep
    the one with the smallest leave-one-out RMSE.

    Returns (best model, [(model, statistics dict) per candidate that could be fitted and solved]).
    """
    results = []
    for name in candidates:
        check_cancel(cancel)
        try:
            model = fit_variogram(experimental, name, weighting, fit_nugget, error_variance)
            statistics = leave_one_out(samples, model, n_neighbours, radius, cancel).statistics()
        except InputError:
            continue
        if statistics['n'] and np.isfinite(statistics['RMSE']):
            results.append((model, statistics))
    if not results:
        raise InputError('no variogram model could be fitted to these samples; check the field values '
                         'and MAX_DISTANCE.', 'VARIOGRAM_MODEL')
    best = min(results, key=lambda item: item[1]['RMSE'])[0]
    return best, results


def variogram_values(samples):
    """Values whose variogram Kriging needs: z for ordinary Kriging; with external drifts the
    residuals of the least-squares fit of z on [1, drifts], as gstat's variogram(z ~ drifts)."""
    if not samples.drift.shape[1]:
        return samples.z
    design = np.column_stack([np.ones(len(samples)), samples.drift])
    coefficients, *_ = np.linalg.lstsq(design, samples.z, rcond=None)
    return samples.z - design @ coefficients


@dataclass(frozen=True)
class VariogramFit:
    experimental: object      # ExperimentalVariogram
    model: object             # VariogramModel
    candidates: list = None   # [(model, leave-one-out statistics)] when the model was chosen automatically
    on_residuals: bool = False
    given: bool = False       # the model was given, not fitted

    @property
    def warnings(self):
        """Fitted parameters on a bound of the fit (variogram.bound_warnings); none for a given model."""
        return [] if self.given else bound_warnings(self.model, self.experimental)


def fit_for_samples(samples, model_name='auto', n_lags=15, max_distance=0.0, weighting='npairs_distance',
                    fit_nugget=True, n_neighbours=0, radius=0.0, cancel=None, error_variance=0.0):
    """Experimental variogram of `variogram_values(samples)` and the fitted model (nugget at least
    `error_variance`, the measurement-error variance); `model_name` 'auto' fits every model and
    keeps the best by leave-one-out RMSE (choose_model)."""
    values = variogram_values(samples)
    experimental = experimental_variogram(samples.x, samples.y, values, n_lags, max_distance, cancel)
    residuals = bool(samples.drift.shape[1])
    if model_name == 'auto':
        model, candidates = choose_model(samples, experimental, MODELS, weighting, fit_nugget, n_neighbours,
                                         radius, cancel, error_variance)
        return VariogramFit(experimental, model, candidates, residuals)
    return VariogramFit(experimental, fit_variogram(experimental, model_name, weighting, fit_nugget,
                                                    error_variance), None, residuals)
