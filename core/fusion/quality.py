"""ERGAS (Wald 2002, "Data Fusion", eq. 4.2) of a fused map; the block-wise agreement statistics
(Pearson r, RMSE, bias, largest error) are core.metrics.PairStats."""
import math


def ergas(rmse_per_band, mean_per_band, ratio):
    """ERGAS = 100 · (h/l) · sqrt(mean_k (RMSE_k / μ_k)²), h/l = fine/coarse pixel size
    (Wald 2002, eq. 4.2); dimensionless, 0 is perfect."""
    terms = [(rmse / mean) ** 2 for rmse, mean in zip(rmse_per_band, mean_per_band)]
    return 100.0 / float(ratio) * math.sqrt(sum(terms) / len(terms))
