"""The 'tiled' input layout of the ONNX contract: F feature values per sample filled cyclically,
row-major, into a square matrix (Cheng et al. 2023, ion-adsorption RE ore on GF-2: "the 4 band
values copied 4 times" into a 4x4 image, so with F=4 every row is b1..b4).

Any feature count (our rule, for hyperspectral or SAR + optical stacks, which the paper names as
the next step): the side is the smallest multiple of 4 whose square holds every feature once, so
the CNN's two 2x2 poolings divide it exactly; cell i holds feature i mod F. 1-16 features: 4x4
(the paper's matrix); 17-64: 8x8; 65-144: 12x12; 145-256 (e.g. 200 bands): 16x16."""
import math

import numpy as np

from ..errors import InputError

TILE = 4              # the paper's side, and the multiple every side is rounded up to
CELLS = TILE * TILE   # cells of the paper's 4x4 matrix


def tile_side(n_features):
    """Side of the square tile of `n_features` features (see the module docstring)."""
    if n_features < 1:
        raise InputError('the tiled layout needs at least one feature.')
    smallest = math.isqrt(n_features - 1) + 1          # smallest s with s² >= F
    return TILE * -(-smallest // TILE)


def tile_indices(n_features):
    """Feature index of each cell of the tile, row-major: cell i holds feature i mod F."""
    return np.arange(tile_side(n_features) ** 2) % n_features


def tile_features(features):
    """(N, F) feature values -> (N, 1, S, S) float32 tiles, S = tile_side(F) (cell (r, c) =
    feature (S·r + c) mod F)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise InputError(f'features must be a 2-D (samples, features) array, not shape {features.shape}.')
    side = tile_side(features.shape[1])
    cells = features[:, tile_indices(features.shape[1])]
    return cells.reshape(features.shape[0], 1, side, side)
