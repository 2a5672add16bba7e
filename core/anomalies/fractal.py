"""Concentration-area (C-A) fractal thresholds (Cheng, Agterberg & Ballantyne 1994).

A(rho >= v), the area where the content is at least v, follows power laws A ~ v^-alpha with
different exponents for populations such as background and anomaly. On a log A - log v plot they
are straight segments; the concentrations where the segments meet are the thresholds.

Input is a histogram of the positive values on a log10 scale (accumulated block-wise elsewhere),
so the curve is exact at the histogram's bin edges. The piecewise fit is hand-written: an
exhaustive search over breakpoint positions with O(1) least-squares segments from prefix sums
(scipy/numpy have no segmented regression; the search is exact where a generic optimiser
could stop in a local minimum).
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..report import page

CURVE_POINTS = 100        # log-spaced concentrations on the C-A curve used for the fit
MIN_SEGMENT_POINTS = 5    # curve points per straight segment, at least
MIN_TAIL_PIXELS = 5       # the curve stops where fewer pixels remain above v (noisy top tail)


@dataclass(frozen=True)
class Segment:
    slope: float          # d log10 A / d log10 v; the fractal exponent alpha is -slope
    intercept: float
    first: int            # curve point indices first..last (inclusive) fitted by this segment
    last: int


@dataclass(frozen=True)
class ConcentrationArea:
    log_c: np.ndarray     # log10 concentration of each curve point
    log_a: np.ndarray     # log10 area (map units^2) with content >= that concentration
    segments: tuple
    breakpoints: tuple    # concentrations (ascending) where adjacent segments meet

    @property
    def threshold(self):
        """The highest breakpoint: the lower bound of the highest (anomaly) population."""
        return self.breakpoints[-1]


def area_curve(log_edges, log_counts, pixel_area, parameter=None):
    """(log10 c, log10 A(>= c)) at up to CURVE_POINTS log-spaced histogram edges, from the lowest
    positive value up to where MIN_TAIL_PIXELS pixels remain."""
    at_least = np.cumsum(log_counts[::-1])[::-1]        # pixels >= each lower bin edge
    usable = np.flatnonzero(at_least >= MIN_TAIL_PIXELS)
    if usable.size < 2 * MIN_SEGMENT_POINTS:
        raise InputError('too few distinct positive values for a concentration-area fit; use '
                         'another threshold method or a larger raster.', parameter)
    picks = np.unique(np.round(np.linspace(0, usable[-1], CURVE_POINTS)).astype(int))
    return log_edges[picks], np.log10(at_least[picks] * pixel_area)


def segment_errors(x, y):
    """Functions giving least-squares (slope, intercept, SSE) of y ~ x over points i..j-1 from
    prefix sums, so every candidate segment costs O(1)."""
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones_like(x), x, y, x * x, x * y, y * y)]

    def fit(i, j):
        n, sx, sy, sxx, sxy, syy = (s[j] - s[i] for s in sums)
        sxx_c = sxx - sx * sx / n
        sxy_c = sxy - sx * sy / n
        syy_c = syy - sy * sy / n
        slope = np.divide(sxy_c, sxx_c, out=np.zeros_like(np.asarray(sxx_c, float)), where=sxx_c > 0)
        sse = np.maximum(syy_c - slope * sxy_c, 0.0)
        return slope, (sy - slope * sx) / n, sse
    return fit


def best_splits(x, y, segments):
    """Start indices of segments 2..n minimising the total squared error of independent fits."""
    n, m = len(x), MIN_SEGMENT_POINTS
    fit = segment_errors(x, y)
    if segments == 2:
        starts = np.arange(m, n - m + 1)
        total = fit(0, starts)[2] + fit(starts, n)[2]
        return (int(starts[np.argmin(total)]),)
    first, second = np.meshgrid(np.arange(m, n - 2 * m + 1), np.arange(2 * m, n - m + 1), indexing='ij')
    valid = second - first >= m
    first, second = first[valid], second[valid]
    total = fit(0, first)[2] + fit(first, second)[2] + fit(second, n)[2]
    best = np.argmin(total)
    return int(first[best]), int(second[best])


def concentration_area(log_edges, log_counts, pixel_area, segments=2, parameter=None):
    """Fit 2 or 3 straight segments to the C-A curve; breakpoints where adjacent lines intersect
    (Cheng et al. 1994), kept between the two curve points around the split."""
    if segments not in (2, 3):
        raise InputError(f'the number of C-A segments must be 2 or 3, not {segments}.', parameter)
    x, y = area_curve(log_edges, log_counts, pixel_area, parameter)
    if len(x) < segments * MIN_SEGMENT_POINTS:
        raise InputError(f'the C-A curve has only {len(x)} points, too few for {segments} segments; '
                         'use fewer segments or another threshold method.', parameter)
    fit = segment_errors(x, y)
    bounds = (0, *best_splits(x, y, segments), len(x))
    fitted = []
    for first, end in zip(bounds[:-1], bounds[1:]):
        slope, intercept, _ = fit(first, end)
        fitted.append(Segment(float(slope), float(intercept), first, end - 1))
    breakpoints = []
    for left, right in zip(fitted[:-1], fitted[1:]):
        low, high = x[left.last], x[right.first]
        if left.slope != right.slope:
            crossing = (right.intercept - left.intercept) / (left.slope - right.slope)
        else:
            crossing = (low + high) / 2
        breakpoints.append(float(10 ** np.clip(crossing, low, high)))
    return ConcentrationArea(x, y, tuple(fitted), tuple(breakpoints))


def ca_figure_html(result, units='', area_units='map units²', used_threshold=None):
    """log-log C-A plot: curve points, fitted segments and breakpoints (embedded PNG)."""
    figure, axes = page.new_figure(6.0, 4.2)
    axes.plot(10 ** result.log_c, 10 ** result.log_a, 'o', markersize=3, color='0.35', label='A(≥ c)')
    for number, segment in enumerate(result.segments, start=1):
        xs = result.log_c[[segment.first, segment.last]]
        axes.plot(10 ** xs, 10 ** (segment.intercept + segment.slope * xs), linewidth=2,
                  label=f'segment {number}: α = {-segment.slope:.3g}')
    for value in result.breakpoints:
        axes.axvline(value, color='0.5', linestyle=':', linewidth=1)
    if used_threshold is not None:
        axes.axvline(used_threshold, color='red', linestyle='--', linewidth=1.2,
                     label=f'threshold {used_threshold:.4g}')
    axes.set_xscale('log')
    axes.set_yscale('log')
    axes.set_xlabel(f'concentration c {units}'.strip())
    axes.set_ylabel(f'area with content ≥ c ({area_units})')
    axes.legend(fontsize=8)
    return page.figure_html(figure, 'concentration-area plot')
