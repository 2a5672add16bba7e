"""Regression accuracy metrics shared by training and accuracy assessment, and streaming
agreement statistics of two rasters (fusion checks, map comparison)."""
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RegressionMetrics:
    n: int
    r2: float     # coefficient of determination, 1 - SSres/SStot
    rmse: float   # root-mean-square error, target units
    rpd: float    # ratio of performance to deviation, SD(measured)/RMSE (Williams 1987)
    rpiq: float   # ratio of performance to interquartile distance, IQR(measured)/RMSE (Bellon-Maurel 2010)
    bias: float   # mean(predicted - measured), target units

    def as_dict(self):
        return asdict(self)


def regression_metrics(measured, predicted):
    """Metrics of predicted against measured values (1-D arrays of equal length, n >= 2)."""
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    residual = predicted - measured
    rmse = float(np.sqrt(np.mean(residual ** 2)))
    total = float(np.sum((measured - measured.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else float('nan')
    sd = float(np.std(measured, ddof=1))
    q75, q25 = np.percentile(measured, [75, 25])
    return RegressionMetrics(n=int(measured.size), r2=r2, rmse=rmse, rpd=_ratio(sd, rmse),
                             rpiq=_ratio(float(q75 - q25), rmse), bias=float(residual.mean()))


def _ratio(spread, rmse):
    return spread / rmse if rmse > 0 else float('inf')


class PairStats:
    """Streaming statistics of pairs (estimate, reference) over blocks; sums are taken around the
    first block's means so that large offsets do not cost precision."""

    def __init__(self):
        self.n = 0
        self.shift = None
        self.sums = np.zeros(6)   # Σe, Σr, Σe², Σr², Σer, Σ(e−r)² of shifted values
        self.max_abs = 0.0

    def add(self, estimate, reference):
        estimate = np.asarray(estimate, dtype=np.float64).ravel()
        reference = np.asarray(reference, dtype=np.float64).ravel()
        keep = np.isfinite(estimate) & np.isfinite(reference)
        estimate, reference = estimate[keep], reference[keep]
        if estimate.size == 0:
            return
        if self.shift is None:
            self.shift = (estimate.mean(), reference.mean())
        e, r = estimate - self.shift[0], reference - self.shift[1]
        difference = estimate - reference
        self.sums += (e.sum(), r.sum(), (e * e).sum(), (r * r).sum(), (e * r).sum(),
                      (difference * difference).sum())
        self.max_abs = max(self.max_abs, float(np.abs(difference).max()))
        self.n += estimate.size

    def result(self):
        """dict n, r (Pearson), rmse, bias (estimate − reference), max_abs, mean and sd of the
        reference; NaN where undefined."""
        if self.n == 0:
            nan = float('nan')
            return dict(n=0, r=nan, rmse=nan, bias=nan, max_abs=nan, reference_mean=nan, reference_sd=nan)
        n = self.n
        se, sr, see, srr, ser, sdd = self.sums
        var_e = see / n - (se / n) ** 2
        var_r = srr / n - (sr / n) ** 2
        cov = ser / n - (se / n) * (sr / n)
        denominator = math.sqrt(max(var_e, 0.0) * max(var_r, 0.0))
        return dict(n=n, r=cov / denominator if denominator > 0 else float('nan'),
                    rmse=math.sqrt(sdd / n), bias=(se - sr) / n + self.shift[0] - self.shift[1],
                    max_abs=self.max_abs, reference_mean=sr / n + self.shift[1],
                    reference_sd=math.sqrt(max(var_r, 0.0)))
