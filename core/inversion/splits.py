"""Train/test splits of a sample set: random, or by square spatial blocks so that neighbouring
(near-duplicate) samples never fall on both sides (Roberts et al. 2017, Ecography 40:913,
"Cross-validation strategies for data with temporal, spatial, hierarchical or phylogenetic
structure")."""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Split:
    train: np.ndarray   # indices of the training samples, ascending
    test: np.ndarray    # indices of the test samples, ascending
    description: dict   # JSON-ready: method, fractions, seed, block size, counts

    def check(self, min_train, parameter):
        """InputError naming `parameter` unless train has >= min_train and test >= 2 samples."""
        if self.train.size < min_train or self.test.size < 2:
            raise InputError(
                f'the split leaves {self.train.size} training and {self.test.size} test samples; '
                f'training needs at least {min_train} and the test at least 2. Change the test '
                'fraction or the block size, or add samples.', parameter)
        return self


def random_split(n, test_fraction, seed):
    """A random test set of round(test_fraction * n) samples (at least 1 on each side when n >= 2);
    the paper's 2:1 train/test ratio is test_fraction = 1/3."""
    n_test = int(min(max(round(test_fraction * n), 1), n - 1))
    order = np.random.default_rng(seed).permutation(n)
    return Split(np.sort(order[n_test:]), np.sort(order[:n_test]),
                 {'method': 'random', 'test_fraction': float(test_fraction), 'seed': int(seed),
                  'n_train': int(n - n_test), 'n_test': int(n_test)})


def block_ids(x, y, block_size):
    """Integer id of the block_size x block_size map-unit square (aligned on 0, 0) of each sample."""
    column = np.floor(np.asarray(x, dtype=np.float64) / block_size).astype(np.int64)
    row = np.floor(np.asarray(y, dtype=np.float64) / block_size).astype(np.int64)
    return np.unique(np.stack([column, row], axis=1), axis=0, return_inverse=True)[1].ravel()


def spatial_block_split(x, y, block_size, test_fraction, seed, parameter=None):
    """Whole blocks go to the test set, in random order, until it holds >= test_fraction of the
    samples; every other block is training. Needs at least two occupied blocks."""
    if not block_size > 0:
        raise InputError(f'the block size must be positive, not {block_size}.', parameter)
    ids = block_ids(x, y, block_size)
    n_blocks = int(ids.max()) + 1 if ids.size else 0
    if n_blocks < 2:
        raise InputError(f'all samples fall in {n_blocks} block(s) of {block_size:g} map units; '
                         'choose a smaller block size (in the layer\'s map units).', parameter)
    counts = np.bincount(ids, minlength=n_blocks)
    order = np.random.default_rng(seed).permutation(n_blocks)
    wanted = test_fraction * ids.size
    # smallest prefix of the shuffled blocks that reaches the wanted size, never all blocks
    n_test_blocks = min(int(np.searchsorted(np.cumsum(counts[order]), wanted)) + 1, n_blocks - 1)
    is_test = np.isin(ids, order[:n_test_blocks])
    test, train = np.flatnonzero(is_test), np.flatnonzero(~is_test)
    return Split(train, test, {
        'method': 'spatial_blocks', 'block_size': float(block_size),
        'test_fraction': float(test_fraction), 'seed': int(seed),
        'n_train': int(train.size), 'n_test': int(test.size),
        'n_blocks_train': int(n_blocks - n_test_blocks), 'n_blocks_test': int(n_test_blocks)})


def default_block_size(x, y, blocks_across=5):
    """Side of square blocks such that `blocks_across` of them span the longer side of the samples'
    extent (a plain default; a variogram range is a better-founded choice)."""
    extent = max(float(np.ptp(x)), float(np.ptp(y)))
    return extent / blocks_across if extent > 0 else 1.0
