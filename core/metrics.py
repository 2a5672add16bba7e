"""Regression accuracy metrics shared by training and accuracy assessment."""
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
