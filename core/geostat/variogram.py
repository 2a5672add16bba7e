"""Semivariograms: experimental variogram, model functions and weighted least-squares fit.

Public API (used by the `variogram` and `kriging` algorithms and by other code):

- `VariogramModel(name, nugget, psill, range, exponent)`: a callable γ(h) with one
  parametrisation for every model, so NUGGET / SILL (partial sill) / RANGE mean the same thing
  whatever the model (see `structure`).
- `experimental_variogram(x, y, z, n_lags, max_distance)` -> `ExperimentalVariogram`, binned like
  gstat's `variogram()` (cutoff = 1/3 of the bounding-box diagonal, 15 lags of equal width).
- `fit_variogram(experimental, model, weighting, fit_nugget)` -> `VariogramModel`, weighted
  least squares as gstat's `fit.variogram` (default weights N_j/h_j², gstat fit.method 7).

Distances are in map units of the coordinates (metres in a projected CRS); semivariances are in
squared units of the field (or of its logarithm).
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..raster.blockio import check_cancel

MODELS = ('spherical', 'exponential', 'gaussian', 'linear', 'power')
BOUNDED_MODELS = ('spherical', 'exponential', 'gaussian')
# name -> (gstat fit.method, description); w_j are the weights of the squared residuals
WEIGHTINGS = {
    'npairs_distance': (7, 'N_j / h_j² (gstat default, fit.method 7)'),
    'npairs': (1, 'N_j (gstat fit.method 1)'),
    'cressie': (2, 'N_j / γ(h_j)² (Cressie 1985, gstat fit.method 2)'),
    'ols': (6, 'unweighted (gstat fit.method 6)'),
}
DEFAULT_LAGS = 15
POWER_EXPONENT_BOUNDS = (0.01, 1.99)  # γ = c·h^a is a valid variogram for 0 < a < 2 (Chilès & Delfiner 2012)


def structure(name, r, exponent=1.0):
    """Unit structure s(r) of a model at scaled distance r = h / range (r > 0), γ = c0 + c·s.

    Bounded models use pykrige's "practical range" convention (s reaches the sill, or 95 % of it,
    at r = 1): spherical 1.5r - 0.5r³ (r < 1) else 1; exponential 1 - exp(-3r) (gstat's range
    parameter is RANGE/3); gaussian 1 - exp(-(7r/4)²) (gstat's is RANGE·4/7) (Webster & Oliver
    2007, ch. 6; pykrige.variogram_models). Unbounded: linear s = r, power s = r^exponent, so
    the partial sill is the semivariance reached (above the nugget) at distance RANGE.
    """
    r = np.asarray(r, dtype=np.float64)
    return _squared_structure_inplace(name, r * r, exponent, 1.0)


def _squared_structure_inplace(name, g, exponent, scale):
    """scale·s(r) computed in `g`, which holds r² and is overwritten (dtype kept: grids use float32).
    Working from r² spares the square root of the gaussian and power models and passes over the
    array for the others, which matters on grids where this runs on (pixels × neighbours)."""
    if name == 'spherical':
        np.minimum(g, 1.0, out=g)
        t = g * (-0.5 * scale)
        t += 1.5 * scale
        np.sqrt(g, out=g)
        g *= t
    elif name in ('exponential', 'gaussian'):
        if name == 'gaussian':
            g *= -1.75 ** 2
        else:
            np.sqrt(g, out=g)
            g *= -3.0
        np.exp(g, out=g)
        g *= -scale
        g += scale
    elif name == 'linear':
        np.sqrt(g, out=g)
        g *= scale
    elif name == 'power':
        np.power(g, exponent / 2.0, out=g)
        g *= scale
    else:
        raise InputError(f'unknown variogram model "{name}"; choose one of {", ".join(MODELS)}.')
    return g


@dataclass(frozen=True)
class VariogramModel:
    """γ(h) = nugget + psill·s(h / range) for h > 0 and γ(0) = 0 (see `structure`).

    `error_variance` is the part of the nugget that is measurement error (gstat's "Err" component;
    pykrige's exact_values=False when it is the whole nugget): it is in the data, not in the field
    being mapped, so Kriging with it predicts the error-free field and smooths at the samples
    instead of honouring them."""
    name: str
    nugget: float
    psill: float
    range: float
    exponent: float = 1.0  # power model only
    error_variance: float = 0.0

    def __post_init__(self):
        if self.name not in MODELS:
            raise InputError(f'unknown variogram model "{self.name}"; choose one of {", ".join(MODELS)}.')
        if not (self.nugget >= 0 and self.psill >= 0 and self.nugget + self.psill > 0):
            raise InputError('the variogram needs nugget >= 0, partial sill >= 0 and a positive total '
                             f'(got nugget {self.nugget}, partial sill {self.psill}).', 'SILL')
        if not self.range > 0:
            raise InputError(f'the variogram range must be positive (got {self.range}).', 'RANGE')
        if not 0 <= self.error_variance <= self.nugget * (1 + 1e-9):
            raise InputError(f'the measurement-error variance ({self.error_variance:g}) must lie between 0 '
                             f'and the nugget ({self.nugget:g}): measurement error is part of the nugget.',
                             'MEASUREMENT_ERROR')

    @property
    def bounded(self):
        return self.name in BOUNDED_MODELS

    @property
    def sill(self):
        """Total sill nugget + psill (for unbounded models: the semivariance at distance RANGE)."""
        return self.nugget + self.psill

    def scaled(self, r):
        """γ at scaled distances r = h / range (any shape); 0 where r == 0."""
        r = np.asarray(r, dtype=np.float64)
        return self.scaled_squared(r * r, overwrite=True)

    def scaled_squared(self, r2, overwrite=False, with_nugget=True, at_zero=0.0):
        """γ at squared scaled distances r² = (h / range)²; `at_zero` where r² == 0. A float32 `r2`
        gives float32; `overwrite` computes in `r2` itself (saves memory on grids); `with_nugget`
        False leaves the nugget out (for callers that account for it themselves)."""
        r2 = np.asarray(r2)
        if r2.dtype not in (np.float32, np.float64):
            r2 = r2.astype(np.float64)
        positive = r2 > 0 if (self.nugget and with_nugget) or at_zero else None
        gamma = r2 if overwrite else r2.copy()
        _squared_structure_inplace(self.name, gamma, self.exponent, self.psill)
        if positive is not None and self.nugget and with_nugget:
            np.add(gamma, self.nugget, out=gamma, where=positive)
        if at_zero:  # every structure is 0 at r = 0
            np.add(gamma, at_zero, out=gamma, where=~positive)
        return gamma

    def target_gamma(self, r2, overwrite=False):
        """γ between samples and a target point at squared scaled distances r²: as `scaled_squared`,
        but a target on a sample is `error_variance` away from it (the sample's measurement error
        is not in the target, Cressie 1993, Statistics for Spatial Data, ch. 3 "noiseless" prediction)."""
        return self.scaled_squared(r2, overwrite, at_zero=self.error_variance)

    def __call__(self, h):
        return self.scaled(np.asarray(h, dtype=np.float64) / self.range)

    def as_dict(self):
        return {'model': self.name, 'nugget': self.nugget, 'psill': self.psill, 'range': self.range,
                'exponent': self.exponent, 'error_variance': self.error_variance}


@dataclass(frozen=True)
class ExperimentalVariogram:
    """Binned semivariances: per non-empty lag, pair count, mean pair distance and γ̂."""
    pairs: np.ndarray     # N_j
    distance: np.ndarray  # mean distance of the pairs in lag j (map units)
    gamma: np.ndarray     # Σ (z_i - z_k)² / (2 N_j) (Matheron 1962)
    cutoff: float
    width: float
    diagonal: float = 0.0  # of the samples' bounding box (map units); 0 when not known

    def __len__(self):
        return len(self.pairs)

    @property
    def longest_range(self):
        """Upper bound of a fitted range: the samples' bounding-box diagonal, the longest distance any
        pair of samples can span and so the longest correlation the data can show; a longer range is
        an extrapolation no pair checks. (Journel & Huijbregts 1978 trust the experimental variogram up
        to about half the field's extent; pykrige bounds the range by the largest lag.) Without a known
        diagonal: 3 x the cutoff (the diagonal for gstat's default cutoff); never below the cutoff."""
        return max(self.diagonal or 3.0 * self.cutoff, self.cutoff)


def default_cutoff(x, y):
    """gstat's default cutoff: one third of the diagonal of the samples' bounding box."""
    return float(np.hypot(np.ptp(x), np.ptp(y))) / 3.0


def experimental_variogram(x, y, z, n_lags=DEFAULT_LAGS, max_distance=None, cancel=None):
    """Isotropic experimental variogram of values z at (x, y), binned as gstat's `variogram()`.

    Pairs with 0 < h <= cutoff fall in lag floor(h / width), width = cutoff / n_lags; `max_distance`
    None or 0 uses gstat's default cutoff. Memory is O(n) per row chunk, time O(n²).
    """
    x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
    if len(x) < 3:
        raise InputError(f'the variogram needs at least 3 samples (got {len(x)}).', 'INPUT')
    cutoff = float(max_distance) if max_distance else default_cutoff(x, y)
    if not cutoff > 0:
        raise InputError('all samples are at the same location; the variogram needs spread-out samples.',
                         'INPUT')
    n_lags = int(n_lags)
    width = cutoff / n_lags
    counts = np.zeros(n_lags)
    distance_sums = np.zeros(n_lags)
    squared_sums = np.zeros(n_lags)
    chunk = max(1, 2_000_000 // len(x))
    for start in range(0, len(x) - 1, chunk):
        check_cancel(cancel)
        rows = np.arange(start, min(start + chunk, len(x) - 1))
        # pairs (i, k) with k > i of the rows in this chunk
        h = np.hypot(x[rows, None] - x[None, :], y[rows, None] - y[None, :])
        upper = np.arange(len(x))[None, :] > rows[:, None]
        keep = upper & (h > 0) & (h <= cutoff)
        h = h[keep]
        squared = (z[rows, None] - z[None, :])[keep] ** 2
        lag = np.minimum((h / width).astype(np.int64), n_lags - 1)
        counts += np.bincount(lag, minlength=n_lags)
        distance_sums += np.bincount(lag, weights=h, minlength=n_lags)
        squared_sums += np.bincount(lag, weights=squared, minlength=n_lags)
    used = counts > 0
    if used.sum() < 3:
        raise InputError(f'only {int(used.sum())} lags hold sample pairs within {cutoff:g} map units; '
                         'increase MAX_DISTANCE or use fewer lags (N_LAGS).', 'MAX_DISTANCE')
    return ExperimentalVariogram(
        pairs=counts[used], distance=distance_sums[used] / counts[used],
        gamma=squared_sums[used] / (2.0 * counts[used]), cutoff=cutoff, width=width,
        diagonal=float(np.hypot(np.ptp(x), np.ptp(y))))


def _weights(experimental, weighting, gamma_model=None):
    n, h = experimental.pairs, experimental.distance
    if weighting == 'npairs_distance':
        return n / h ** 2
    if weighting == 'npairs':
        return n.astype(np.float64)
    if weighting == 'cressie':
        return n / np.maximum(gamma_model, 1e-300) ** 2
    if weighting == 'ols':
        return np.ones_like(h)
    raise InputError(f'unknown weighting "{weighting}"; choose one of {", ".join(WEIGHTINGS)}.',
                     'FIT_WEIGHTS')


def _sills(experimental, name, range_, exponent, weighting, fit_nugget, min_nugget=0.0):
    """Best (nugget, psill, weighted SSE) for a fixed range/exponent: the model is linear in the
    sills, so they come from non-negative least squares (variable projection, Golub & Pereyra 1973).
    The nugget is at least `min_nugget` (exactly that without `fit_nugget`)."""
    from scipy.optimize import nnls
    s = structure(name, experimental.distance / range_, exponent)
    design = np.column_stack([np.ones_like(s), s]) if fit_nugget else s[:, None]
    excess = experimental.gamma - min_nugget  # the nugget's part above min_nugget is fitted
    # Cressie weights depend on the model: iterate them from the N_j weights (as gstat does)
    weights = _weights(experimental, 'npairs' if weighting == 'cressie' else weighting)
    for _ in range(5 if weighting == 'cressie' else 1):
        root = np.sqrt(weights)
        coefficients, _ = nnls(design * root[:, None], excess * root)
        fitted = design @ coefficients + min_nugget
        if weighting == 'cressie':
            weights = _weights(experimental, weighting, fitted)
    sse = float(np.sum(weights * (experimental.gamma - fitted) ** 2))
    nugget, psill = (coefficients if fit_nugget else (0.0, coefficients[0]))
    return float(nugget) + min_nugget, float(psill), sse


def fit_variogram(experimental, model='spherical', weighting='npairs_distance', fit_nugget=True,
                  error_variance=0.0):
    """Weighted least-squares fit of `model` to an ExperimentalVariogram.

    Minimises Σ w_j (γ̂_j - γ(h_j))² (Cressie 1985; gstat `fit.variogram`); sills are solved exactly
    for each range (or power exponent) and the range is searched on a log grid then refined by
    bounded scalar minimisation. Linear/power models take RANGE = the cutoff. A measurement-error
    variance is part of the nugget, so the nugget is fitted from it upwards. Returns a
    VariogramModel carrying `error_variance`.
    """
    from scipy.optimize import minimize_scalar
    if model not in MODELS:
        raise InputError(f'unknown variogram model "{model}"; choose one of {", ".join(MODELS)}.',
                         'VARIOGRAM_MODEL')
    if not np.any(experimental.gamma > 0):
        raise InputError('every sample pair has the same value: the field is constant, so there is '
                         'nothing to fit or krige; choose another FIELD.', 'FIELD')
    cutoff = experimental.cutoff
    floor = float(error_variance)
    if model == 'linear':
        nugget, psill, _ = _sills(experimental, model, cutoff, 1.0, weighting, fit_nugget, floor)
        return _checked_model(model, nugget, psill, cutoff, error_variance=floor)
    if model == 'power':
        low, high = POWER_EXPONENT_BOUNDS
        candidates = np.linspace(low, high, 40)

        def sse_of(value):
            return _sills(experimental, model, cutoff, value, weighting, fit_nugget, floor)[2]
    else:
        low, high = shortest_range(experimental), experimental.longest_range
        candidates = np.geomspace(low, high, 60)

        def sse_of(value):
            return _sills(experimental, model, value, 1.0, weighting, fit_nugget, floor)[2]
    errors = [sse_of(value) for value in candidates]
    best = int(np.argmin(errors))
    bracket = (candidates[max(best - 1, 0)], candidates[min(best + 1, len(candidates) - 1)])
    refined = minimize_scalar(sse_of, bounds=bracket, method='bounded', options={'xatol': 1e-9 * bracket[1]})
    value = float(refined.x) if refined.fun <= errors[best] else float(candidates[best])
    if model == 'power':
        nugget, psill, _ = _sills(experimental, model, cutoff, value, weighting, fit_nugget, floor)
        return _checked_model(model, nugget, psill, cutoff, value, floor)
    nugget, psill, _ = _sills(experimental, model, value, 1.0, weighting, fit_nugget, floor)
    return _checked_model(model, nugget, psill, value, error_variance=floor)


def shortest_range(experimental):
    """Lower bound of a fitted range: a quarter of the mean distance of the first lag (shorter ranges
    are not resolved by the samples)."""
    return float(experimental.distance.min()) / 4.0


def bound_warnings(model, experimental, tolerance=1e-3):
    """Warnings for fitted parameters that sit on a bound of the fit (the search stopped there, so
    the value says more about the bound than about the data). A nugget of 0 is not warned about: it
    is a value a variogram can have (no measurement error or micro-scale variation), not a search
    limit."""
    warnings = []
    if model.name in ('linear', 'power'):
        low, high = POWER_EXPONENT_BOUNDS
        if model.name == 'power' and not low * (1 + tolerance) < model.exponent < high * (1 - tolerance):
            warnings.append(f'the fitted power exponent {model.exponent:.3g} sits on a bound of its valid '
                            f'range ({low:g}-{high:g}); the experimental variogram is not a power law.')
    elif model.range >= experimental.longest_range * (1 - tolerance):
        warnings.append(
            f'the fitted range {model.range:.6g} sits on its upper bound, the diagonal of the samples\' '
            f'extent ({experimental.longest_range:.6g} map units): the variogram still rises at the largest '
            'lags, so the data show no sill (a trend, or a correlation longer than the sampled area). The '
            'range is not determined: consider a linear or power model, Kriging with an external drift, '
            'or a wider survey.')
    elif model.range <= shortest_range(experimental) * (1 + tolerance):
        warnings.append(
            f'the fitted range {model.range:.6g} sits on its lower bound, a quarter of the first lag '
            f'distance ({shortest_range(experimental):.6g}): no spatial correlation is resolved at this '
            'sample spacing, and Kriging gives about the mean between samples.')
    if model.psill <= 0:
        warnings.append('the fitted partial sill is 0 (pure nugget): the samples show no spatial '
                        'correlation, and Kriging gives the mean between samples.')
    return warnings


def _checked_model(name, nugget, psill, range_, exponent=1.0, error_variance=0.0):
    if nugget + psill <= 0:
        raise InputError('the fitted variogram is zero everywhere; the field looks constant at the '
                         'lag distances used. Choose another FIELD or MAX_DISTANCE.', 'FIELD')
    return VariogramModel(name, nugget, psill, range_, exponent, error_variance)

