"""Agreement of a fused map with a reference, accumulated block by block: Pearson r, RMSE, bias,
largest error, and ERGAS (Wald 2002, "Data Fusion", eq. 4.2)."""
import math

import numpy as np


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


def ergas(rmse_per_band, mean_per_band, ratio):
    """ERGAS = 100 · (h/l) · sqrt(mean_k (RMSE_k / μ_k)²), h/l = fine/coarse pixel size
    (Wald 2002, eq. 4.2); dimensionless, 0 is perfect."""
    terms = [(rmse / mean) ** 2 for rmse, mean in zip(rmse_per_band, mean_per_band)]
    return 100.0 / float(ratio) * math.sqrt(sum(terms) / len(terms))
