"""The 'tiled' input layout of the ONNX contract: F feature values per sample filled cyclically,
row-major, into a 4x4 matrix (Cheng et al. 2023, ion-adsorption RE ore on GF-2: "the 4 band
values copied 4 times" into a 4x4 image, so with F=4 every row is b1..b4)."""
import numpy as np

from ..errors import InputError

TILE = 4
CELLS = TILE * TILE


def tile_indices(n_features):
    """Feature index of each of the 16 cells, row-major: cell i holds feature i mod F."""
    if not 1 <= n_features <= CELLS:
        raise InputError(f'the tiled (4x4) layout takes 1 to {CELLS} features, not {n_features}; '
                         'choose fewer feature fields or another model.')
    return np.arange(CELLS) % n_features


def tile_features(features):
    """(N, F) feature values -> (N, 1, 4, 4) float32 tiles (cell (r, c) = feature (4r+c) mod F)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise InputError(f'features must be a 2-D (samples, features) array, not shape {features.shape}.')
    cells = features[:, tile_indices(features.shape[1])]
    return cells.reshape(features.shape[0], 1, TILE, TILE)
