"""Rank (Spearman) and linear (Pearson) correlation of a target with each feature, with
Benjamini-Hochberg false-discovery-rate adjusted p-values.

Cheng et al. (2023) screen bands by Spearman's rho because element contents are not normally
distributed; Pearson is offered for comparison.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

METHODS = ('spearman', 'pearson')
MISSING_MODES = ('pairwise', 'listwise')
MIN_SAMPLES = 3


@dataclass(frozen=True)
class CorrelationResult:
    feature: str
    method: str
    n: int                 # samples used (pairs with both values present)
    coefficient: float     # rho or r, dimensionless; nan where undefined
    p_value: float         # two-sided, nan where undefined
    p_adjusted: float      # Benjamini-Hochberg within the method's family, nan where undefined
    significant: bool | None  # p_adjusted <= alpha (BH 1995 rejection rule); None where undefined
    note: str              # why the coefficient is undefined, '' otherwise


def benjamini_hochberg(p_values):
    """Benjamini & Hochberg (1995) step-up adjusted p-values: min over j >= i of p_(j)·m/j, capped at 1.

    Hand-written because scipy.stats.false_discovery_control needs scipy >= 1.11 (QGIS 3.22 on
    Debian 12 ships 1.10). NaN entries are not tests: they stay NaN and do not count in m.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    defined = np.flatnonzero(np.isfinite(p_values))
    if defined.size == 0:
        return adjusted
    order = defined[np.argsort(p_values[defined], kind='stable')]
    m = order.size
    scaled = p_values[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return adjusted


def _coefficient(method, x, y):
    from scipy import stats
    result = stats.spearmanr(x, y) if method == 'spearman' else stats.pearsonr(x, y)
    return float(result[0]), float(result[1])


def _one_test(name, method, target, values):
    """(n, coefficient, p, note) of one feature; nan and a note where the coefficient is undefined."""
    present = np.isfinite(target) & np.isfinite(values)
    n = int(present.sum())
    if n < MIN_SAMPLES:
        return n, np.nan, np.nan, f'only {n} samples with both values; at least {MIN_SAMPLES} needed'
    x, y = values[present], target[present]
    if np.ptp(x) == 0:
        return n, np.nan, np.nan, f'"{name}" is constant over these samples: coefficient undefined'
    if np.ptp(y) == 0:
        return n, np.nan, np.nan, 'the target is constant over these samples: coefficient undefined'
    coefficient, p_value = _coefficient(method, x, y)
    return n, coefficient, p_value, ''


def correlate(target, features, methods=('spearman',), alpha=0.05, missing='pairwise',
              target_name='TARGET'):
    """Correlate `target` (1-D, NaN = missing) with each array of `features` (name -> 1-D array).

    missing='pairwise' uses, per feature, the samples where target and that feature are present;
    'listwise' first drops every sample with any missing value. The BH family is the features
    tested with one method. Returns one CorrelationResult per (method, feature), methods first.
    """
    target = np.asarray(target, dtype=np.float64)
    features = {name: np.asarray(values, dtype=np.float64) for name, values in features.items()}
    if not features:
        raise InputError('no feature fields to correlate with; choose at least one numeric field '
                         'other than the target.', 'FEATURES')
    if missing not in MISSING_MODES or any(m not in METHODS for m in methods):
        raise ValueError(f'missing must be one of {MISSING_MODES}, methods among {METHODS}')
    if missing == 'listwise':
        keep = np.isfinite(target) & np.logical_and.reduce([np.isfinite(v) for v in features.values()])
        target = target[keep]
        features = {name: values[keep] for name, values in features.items()}
    present = target[np.isfinite(target)]
    if present.size < MIN_SAMPLES:
        raise InputError(f'only {present.size} samples have a target value (after {missing} removal '
                         f'of NULLs); at least {MIN_SAMPLES} are needed: add samples, fill the NULL '
                         'values or choose another field.', target_name)
    if np.ptp(present) == 0:
        raise InputError(f'the target is constant ({present[0]:g}) over all samples, so no '
                         'correlation is defined; choose a field that varies.', target_name)
    results = []
    for method in methods:
        tests = [(name, *_one_test(name, method, target, values)) for name, values in features.items()]
        adjusted = benjamini_hochberg([test[3] for test in tests])
        for (name, n, coefficient, p_value, note), p_adj in zip(tests, adjusted):
            significant = None if np.isnan(p_adj) else bool(p_adj <= alpha)
            results.append(CorrelationResult(name, method, n, coefficient, p_value, float(p_adj),
                                             significant, note))
    return results
