"""Batched ordinary / universal Kriging systems: one factorisation per neighbour set, shared by
every target that uses the set.

Hand-written rather than pykrige because pykrige's grid execution holds an (n_targets ×
n_samples) matrix and factorises per target in moving-window mode; here a stack of neighbour
sets is factorised at once (numpy stacked QR/Cholesky) and each factorisation is applied to many
targets with matrix products.

Method: the unbiasedness constraints Fᵀλ = f₀ (F = drift functions at the samples, first column
1) are solved in the null space of Fᵀ (Chilès & Delfiner 2012, §3.4; Cressie 1993, §3.4.5):
λ = a₀ + Q₂v with a₀ = Q₁R⁻ᵀf₀ from F = [Q₁ Q₂][R; 0], and v minimises the variance with the
generalised covariance K = -γ, whose restriction M = -Q₂ᵀΓQ₂ is positive definite for every
valid variogram, bounded or not. With L Lᵀ = M, H = L⁻¹Q₂ᵀ and w = H(Γa₀ - γ₀):
    prediction = zᵀa₀ + (Hz)·w,    variance = 2a₀ᵀγ₀ - a₀ᵀΓa₀ - |w|²
(units of z and z²). Sets padded with index -1 get decoupled dummy samples (K = identity,
F = 0, γ₀ = 0), which receive zero weight, so sets of unequal size stack.
"""
from dataclasses import replace

import numpy as np
from scipy.linalg import lapack

from ..errors import InputError
from ..linalg import gathered_matmul, matmul

PAD = -1


class KrigingFrame:
    """Samples in a numerically convenient frame: coordinates centred and divided by the variogram
    range (so distances are r = h / range), the variogram divided by its sill (variances are scaled
    back by `variance_scale`), external drifts standardised (mean 0, SD 1). Kriging weights do not
    change when γ is scaled, and in units of the sill the systems are conditioned alike whatever the
    units of z: values of 1e30 would overflow float32 grids and swamp the padding's unit
    covariance."""

    def __init__(self, model, x, y, z, drift=None):
        self.variance_scale = model.sill
        self.model = replace(model, nugget=model.nugget / model.sill, psill=model.psill / model.sill,
                             error_variance=model.error_variance / model.sill)
        self.x0, self.y0 = float(np.mean(x)), float(np.mean(y))
        self.x, self.y = self.scale_xy(x, y)
        self.z = np.asarray(z, dtype=np.float64)
        drift = np.zeros((len(self.z), 0)) if drift is None else np.asarray(drift, dtype=np.float64)
        self.drift_mean = drift.mean(axis=0)
        self.drift_scale = drift.std(axis=0)
        if np.any(self.drift_scale <= 0):
            column = int(np.argmin(self.drift_scale)) + 1
            raise InputError(f'external drift {column} has the same value at every sample, so it cannot '
                             'explain anything; remove it from DRIFT_RASTERS.', 'DRIFT_RASTERS')
        self.F = self.drift_matrix(drift)

    @property
    def n_drift_terms(self):
        return self.F.shape[1]

    def scale_xy(self, x, y):
        inverse = 1.0 / self.model.range
        return ((np.asarray(x, dtype=np.float64) - self.x0) * inverse,
                (np.asarray(y, dtype=np.float64) - self.y0) * inverse)

    def drift_matrix(self, drift):
        """[1, standardised drifts] for raw drift values of shape (..., q)."""
        drift = np.asarray(drift, dtype=np.float64)
        standardised = (drift - self.drift_mean) / self.drift_scale
        return np.concatenate([np.ones(drift.shape[:-1] + (1,)), standardised], axis=-1)


def _triangular_solves(lower, rhs):
    """L⁻¹B for a stack of lower-triangular matrices L (T, m, m) and right-hand sides B (T, m, k)
    (LAPACK dtrtrs per matrix: numpy has no batched triangular solve, its stacked inv/solve are very
    slow with threaded OpenBLAS, and one call per set replaces an inversion and a product)."""
    solutions = np.empty(rhs.shape)
    if lower.shape[-1] == 0:  # sets no larger than the drift: nothing to solve (marked unsolvable)
        return solutions
    for index, (matrix, vectors) in enumerate(zip(lower, rhs)):
        solutions[index], info = lapack.dtrtrs(matrix, vectors, lower=1)
        if info != 0:
            solutions[index] = np.nan
    return solutions


def _cholesky_solve(lower, rhs):
    """x with L Lᵀ x = rhs for a stack of Cholesky factors L (T, m, m) and vectors (T, m) (LAPACK
    dpotrs per set: numpy has no batched triangular solve)."""
    solutions = np.empty_like(rhs)
    if lower.shape[-1] == 0:  # sets no larger than the drift: nothing to solve (marked unsolvable)
        return solutions
    for index, (matrix, vector) in enumerate(zip(lower, rhs)):
        solutions[index], _ = lapack.dpotrs(matrix, vector, lower=1)
    return solutions


def _upper_inverse_transposed(upper):
    """R⁻ᵀ for a stack of small (p × p) upper-triangular R, by forward substitution."""
    p = upper.shape[-1]
    result = np.zeros_like(upper)
    identity = np.eye(p)
    for row in range(p):  # solve Rᵀ X = I row by row (Rᵀ is lower triangular)
        known = np.einsum('tk,tkc->tc', upper[:, :row, row], result[:, :row, :])
        result[:, row, :] = (identity[row] - known) / upper[:, row, row, None]
    return result


def _cholesky(matrices):
    """Stacked Cholesky; sets whose matrix is not positive definite get NaN factors."""
    try:
        return np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        factors = np.full_like(matrices, np.nan)
        for index, matrix in enumerate(matrices):
            try:
                factors[index] = np.linalg.cholesky(matrix)
            except np.linalg.LinAlgError:
                pass
        return factors


def pairwise_squared_distances(ax, ay, bx, by, dtype=np.float64):
    """Squared distances between points a (T, N) and points b (T, P) of each set: (T, N, P);
    differences are taken in float64, the rest in `dtype`."""
    dx = (ax[:, :, None] - bx[:, None, :]).astype(dtype, copy=False)
    dy = (ay[:, :, None] - by[:, None, :]).astype(dtype, copy=False)
    dx *= dx
    dy *= dy
    dx += dy
    return dx


class KrigingSystems:
    """Factorised systems for a stack of T neighbour sets (indices into the frame's samples,
    shape (T, N), padded with -1). Without `variance` only the prediction's row of the operator is
    built (predict then returns variance None): a dot product of N + p per target instead of a matrix
    product."""

    def __init__(self, frame, sets, variance=True):
        sets = np.atleast_2d(np.asarray(sets, dtype=np.int64))
        self.frame = frame
        self.valid = sets != PAD
        self.all_valid = bool(self.valid.all())
        safe = np.where(self.valid, sets, 0)
        p = frame.n_drift_terms
        self.sx, self.sy = frame.x[safe], frame.y[safe]
        z = np.where(self.valid, frame.z[safe], 0.0)
        F = np.where(self.valid[:, :, None], frame.F[safe], 0.0)
        gamma = self.sample_semivariances()
        q, r = np.linalg.qr(F, mode='complete')
        r = r[:, :p, :]
        diagonal = np.abs(np.diagonal(r, axis1=1, axis2=2))
        # drift columns (standardised, norm ~ sqrt(N)) that are collinear within a set make R singular
        self.solvable = (np.all(diagonal > 1e-7 * np.sqrt(self.valid.sum(axis=1, keepdims=True)), axis=1)
                         & (self.valid.sum(axis=1) > p))
        r[~self.solvable] = np.eye(p)
        q1, q2 = q[:, :, :p], q[:, :, p:]
        a = matmul(q1, _upper_inverse_transposed(r))                       # (T, N, p) = Q₁R⁻ᵀ
        m = -matmul(q2.transpose(0, 2, 1), matmul(gamma, q2))
        m[~self.solvable] = np.eye(m.shape[1])
        factor = _cholesky(m)
        self.solvable &= np.all(np.isfinite(factor), axis=(1, 2))
        factor[~self.solvable] = np.eye(m.shape[1])
        self.variance = variance
        if variance:
            operator = self._build_operator(factor, q2, a, gamma, z)
        else:  # the prediction row alone: -u on γ₀, Aᵀ(z + Γu) on f₀, with u = HᵀHz = Q₂M⁻¹Q₂ᵀz
            # (zᵀa₀ + (Hz)·w of the module docstring, with a₀ = Af₀ and w = H(ΓAf₀ - γ₀))
            u = np.einsum('tnm,tm->tn', q2, _cholesky_solve(factor, np.einsum('tnm,tn->tm', q2, z)))
            n = z.shape[1]
            self.m = 0
            operator = np.empty((len(sets), 1, n + p))
            operator[:, 0, :n] = -u
            operator[:, 0, n:] = np.einsum('tnp,tn->tp', a, z + np.einsum('tnk,tk->tn', gamma, u))
        # transposed (T, N + p, rows): predict multiplies target-major matrices (P, N + p) by it
        self._cast = {np.dtype(np.float64): np.ascontiguousarray(operator.transpose(0, 2, 1))}

    def _build_operator(self, factor, q2, a, gamma, z):
        """One operator for every target quantity, applied to X = [γ₀; f₀] (N + p rows) in one
        matrix product: rows 0..m-1 give -w, row m the prediction zᵀλ, the last p rows Aᵀγ₀."""
        h = _triangular_solves(factor, q2.transpose(0, 2, 1))            # (T, m, N) = L⁻¹Q₂ᵀ
        gamma_a = matmul(gamma, a)                                        # (T, N, p)
        b = matmul(h, gamma_a)                                            # (T, m, p)
        self.e = matmul(a.transpose(0, 2, 1), gamma_a)                    # (T, p, p)
        hz = np.einsum('tmn,tn->tm', h, z)
        atz = np.einsum('tnp,tn->tp', a, z)
        (sets, m, n), p = h.shape, a.shape[2]
        self.m = m
        operator = np.zeros((sets, m + 1 + p, n + p))
        operator[:, :m, :n] = h
        operator[:, :m, n:] = -b
        operator[:, m, :n] = -np.einsum('tmn,tm->tn', h, hz)
        operator[:, m, n:] = atz + np.einsum('tmp,tm->tp', b, hz)
        operator[:, m + 1:, :n] = a.transpose(0, 2, 1)
        return operator

    def sample_semivariances(self):
        """Γ (T, N, N) between each set's samples: the one place the samples' (generalised)
        covariance is built, so a per-sample error variance would enter here on the diagonal."""
        gamma = self.frame.model.scaled_squared(
            pairwise_squared_distances(self.sx, self.sy, self.sx, self.sy), overwrite=True)
        pad = ~self.valid
        gamma[pad[:, :, None] | pad[:, None, :]] = 0.0
        t_index, n_index = np.nonzero(pad)
        gamma[t_index, n_index, n_index] = -1.0  # dummy samples: generalised covariance 1, uncoupled
        return gamma

    def __len__(self):
        return len(self.valid)

    def target_matrix(self, tx, ty, f0, dtype=np.float64, index=None):
        """X = [γ₀ᵀ f₀] (T, P, N + p), a row per target, for targets at scaled coordinates (T, P) with
        drift rows f0 (T, P, p): γ₀ between each set's samples and its targets, in `dtype`; `index`
        selects the sets the targets belong to (default all)."""
        index = slice(None) if index is None else index
        squared = pairwise_squared_distances(tx, ty, self.sx[index], self.sy[index], dtype)
        gamma = self.frame.model.target_gamma(squared, overwrite=True)
        gamma[np.broadcast_to(~self.valid[index][:, None, :], gamma.shape)] = 0.0
        return np.concatenate([gamma, f0.astype(dtype)], axis=2)

    def nugget_free_gamma(self, tx, ty, index, may_hit_samples=True):
        """γ₀ᵀ (T, P, N) in float64 lacking the nugget (pass the nugget as predict's nugget_left_out) for
        targets at scaled coordinates (T, P), the f₀ rows left to predict: the exact grid's hot path,
        where each avoided pass over (targets × neighbours) counts, and one contiguous array (ufuncs
        ran at half speed on the γ₀ rows of a [γ₀; f₀ᵀ] array). A target on a sample gets σ²ₑ - nugget
        (see target_gamma); finding such targets costs a pass, made only when `may_hit_samples`."""
        sx, sy = self.sx[index], self.sy[index]
        gamma = np.subtract(tx[:, :, None], sx[:, None, :])
        dy = ty[:, :, None] - sy[:, None, :]
        gamma *= gamma
        dy *= dy
        gamma += dy
        model = self.frame.model
        on_sample = (gamma == 0) if may_hit_samples and model.nugget else None
        model.scaled_squared(gamma, overwrite=True, with_nugget=False)
        if on_sample is not None:
            gamma[on_sample] = model.error_variance - model.nugget
        if not self.all_valid:
            gamma[np.broadcast_to(~self.valid[index][:, None, :], gamma.shape)] = 0.0
        return gamma

    def predict(self, x, f0, nugget_left_out=0.0, index=None):
        """Prediction and variance (T, P) from a target matrix `x` (T, P, N + p) (see target_matrix;
        its dtype sets the precision of the product and of its sums), or from γ₀ᵀ alone (T, P, N)
        whose f₀ columns are then taken from f0, and drift rows f0 (T, P, p) of the sets selected by
        `index` (default all); NaN for unsolvable sets; variance None for systems built without it.

        `nugget_left_out` c: x's γ₀ lacks a constant c (γ₀ - c·1 with -c where γ₀ = 0). Since
        1 = F e₁ lies in the drift space, H·1 = 0 and Aᵀ1 = e₁: only the variance changes, by 2c,
        which is added back here (one pass less over the largest array on grids).

        With a measurement-error variance σ²ₑ the target is the error-free field: its variance
        is σ²ₑ less than that of a new measurement (gstat's "Err" convention)."""
        index = slice(None) if index is None else index
        dtype = x.dtype
        if dtype not in self._cast:
            self._cast[dtype] = self._cast[np.dtype(np.float64)].astype(dtype)
        operators, columns = self._cast[dtype], x.shape[2]                # (S, N + p, m + 1 + p)
        if not self.variance:  # the dot products of the prediction row alone
            row = operators[index, :, 0]
            prediction = np.einsum('tkn,tn->tk', x, row[:, :columns]).astype(np.float64)
            if columns < row.shape[1]:
                prediction += np.einsum('tkp,tp->tk', f0, row[:, columns:])
            prediction[~self.solvable[index]] = np.nan
            return prediction, None
        if columns < operators.shape[1]:  # γ₀ alone (a copy with f₀ costs less than a rank-p update)
            gamma, x = x, np.empty_like(x, shape=x.shape[:2] + (operators.shape[1],))  # in x's memory order
            x[:, :, :columns] = gamma
            x[:, :, columns:] = f0
        y = gathered_matmul(x, operators, np.arange(len(operators))[index])  # (T, P, m + 1 + p)
        m = self.m
        prediction = y[:, :, m].astype(np.float64)
        # sums over the columns of y accumulate in its dtype, as the product did; the variance's
        # difference of terms (~ sill each) is taken in float64
        a_gamma0 = np.einsum('tkp,tkp->tk', f0.astype(dtype, copy=False), y[:, :, m + 1:])
        variance = 2.0 * a_gamma0.astype(np.float64)
        variance -= np.einsum('tkp,tkp->tk', f0, matmul(f0, self.e[index]))
        variance -= np.einsum('tkm,tkm->tk', y[:, :, :m], y[:, :, :m])
        variance += 2.0 * nugget_left_out - self.frame.model.error_variance
        variance *= self.frame.variance_scale
        prediction[~self.solvable[index]] = np.nan
        variance[~self.solvable[index]] = np.nan
        return prediction, variance


def check_global_size(n_samples, limit=5000):
    if n_samples > limit:
        raise InputError(f'Kriging with all {n_samples} samples in every system needs too much memory and '
                         f'time (limit {limit}); set N_NEIGHBOURS (e.g. 32) or SEARCH_RADIUS.',
                         'N_NEIGHBOURS')
