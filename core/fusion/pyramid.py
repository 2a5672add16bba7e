"""Low/high-frequency split of rasters by an undecimated ("à trous") Laplacian pyramid.

The low frequency of an n-level pyramid is the image smoothed by the cascade of Burt & Adelson's
5-tap generating kernel w = [1, 4, 6, 4, 1] / 16 (Burt & Adelson 1983, IEEE Trans. Commun. 31(4),
a = 0.375), dilated by 2**k at level k (Starck & Murtagh, "Astronomical Image and Data Analysis",
2006, §2.3.6, the à trous B3-spline cascade). Undecimated, the split is shift-invariant and
alias-free, and the low frequency is one explicit separable linear filter whose support is known:
HALO = 2·(2**n − 1) pixels on each side. A block read with that many halo rows therefore gives
exactly the whole-array result, which is what makes block-wise processing exact.

Edges: the array is extended by whole-sample symmetric reflection (numpy 'symmetric') before the
cascade. Nodata: normalised convolution (Knutsson & Westin 1993) — the filter is applied to
value·weight and to the weight, and the ratio is the low frequency; pixels whose neighbourhood
holds no valid pixel get NaN.
"""
import math

import numpy as np

KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0
MIN_WEIGHT = 1e-6


def levels_for_ratio(ratio):
    """Pyramid levels matching a coarse/fine pixel-size ratio: the level-n low frequency keeps
    periods longer than about 2**n fine pixels, i.e. what a grid 2**n times coarser can hold."""
    return max(1, int(round(math.log2(max(float(ratio), 1.0)))))


def halo(levels):
    """Rows (and columns) of neighbours on each side that the low frequency of `levels` needs."""
    return 2 * (2 ** int(levels) - 1)


def white_noise_gain(levels):
    """RMS gain of the detail filter x − lowpass(x) on white noise: ‖δ − k‖₂ with k the 2-D
    separable cascade kernel (sum of squared taps of a linear filter; 0.891 for one level)."""
    size = halo(levels)
    impulse = np.zeros((1, 2 * size + 1, 2 * size + 1), dtype=np.float64)
    impulse[0, size, size] = 1.0
    kernel = _smooth_valid(np.pad(impulse, ((0, 0), (size, size), (size, size))), levels)
    kernel[0, size, size] -= 1.0
    return float(np.sqrt(np.sum(kernel ** 2)))


def _shifted(array, axis, start, length):
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, start + length)
    return array[tuple(index)]


def _smooth_valid(array, levels):
    """Cascade of dilated 5-tap kernels along the last two axes, 'valid' mode: each axis loses
    2·halo(levels) samples. Hand-written with slices because scipy.ndimage has no dilated
    convolution and convolving with the zero-filled dilated kernel costs 2**k times more."""
    for level in range(levels):
        step = 2 ** level
        for axis in (array.ndim - 1, array.ndim - 2):
            length = array.shape[axis] - 4 * step
            taps = [_shifted(array, axis, j * step, length) for j in range(5)]
            # symmetric kernel: (x0 + x4)/16 + (x1 + x3)·4/16 + x2·6/16
            smoothed = taps[0] + taps[4]
            smoothed *= KERNEL[0]
            inner = taps[1] + taps[3]
            inner *= KERNEL[1]
            smoothed += inner
            smoothed += np.multiply(taps[2], KERNEL[2], out=inner)
            array = smoothed
    return array


def lowpass(values, valid, levels, top=None, bottom=None, left=0, right=0):
    """Low frequency of `values` (bands, rows, cols) at the rows of a block.

    `values` and `valid` (rows, cols, bool) cover the block's rows plus `top` and `bottom` halo
    rows read around them (default: halo(levels) each, i.e. an interior block); where fewer halo
    rows exist the block touches the raster edge and the missing rows are reflected, exactly as
    for the whole array. `left` and `right` are the halo columns of a tile the same way (default
    none: the block spans the whole width). Returns (low, weight): low (bands, core rows, core
    cols) float32 with NaN where no valid pixel is near, weight the filtered validity (1 far from
    holes and edges of the data).
    """
    size = halo(levels)
    top = size if top is None else top
    bottom = size if bottom is None else bottom
    if max(top, bottom, left, right) > size:
        raise ValueError(f'halo ({top}, {bottom}, {left}, {right}) exceeds the filter support {size}')
    pads = ((0, 0), (size - top, size - bottom), (size - left, size - right))
    if valid.all():
        # no hole within the support: the filtered weight is exactly 1 (the kernel's taps are
        # binary fractions summing to 1), so the normalisation can be skipped without changing bits
        low = _smooth_valid(np.pad(values.astype(np.float32, copy=False), pads, mode='symmetric'),
                            levels)
        return low, np.ones(low.shape[1:], dtype=np.float32)
    weight = valid.astype(np.float32)
    stack = np.empty((values.shape[0] + 1, *values.shape[1:]), dtype=np.float32)
    np.multiply(np.nan_to_num(values, nan=0.0), weight, out=stack[:-1], casting='unsafe')
    stack[-1] = weight
    smoothed = _smooth_valid(np.pad(stack, pads, mode='symmetric'), levels)
    weight = smoothed[-1]
    low = smoothed[:-1]
    with np.errstate(invalid='ignore', divide='ignore'):
        low /= weight
    low[:, weight < MIN_WEIGHT] = np.nan
    return low, weight
