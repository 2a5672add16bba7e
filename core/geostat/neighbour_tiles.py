"""Exact k-nearest-sample sets of every pixel of a block of grid rows, found tile by tile.

A k-d tree query per pixel costs more than the Kriging it serves, yet neighbouring pixels mostly
share their k nearest samples. For a tile of pixels with centre c and half-diagonal r, every pixel
p of the tile has |d_j(p) - d_j(c)| <= r for every sample j (triangle inequality), so with the
distances from c sorted ascending, d_(i) the (i+1)-th smallest:
- j is among p's k nearest when d_j(c) <= d_(k)(c) - 2r (fewer than k others can be nearer to p);
- j is not when d_j(c) > d_(k-1)(c) + 2r (k samples are surely nearer to p);
only the few samples between the two bounds are ranked pixel by pixel. Hand-written because no
library offers k-nearest sets over a raster lattice; the result equals a per-pixel k-d tree query,
ties included (samples on a survey lattice are often equally distant from a pixel centre): where
the k-th and (k+1)-th nearest are at the same distance, the pixel takes the k-d tree's choice.

Pixels are grouped by set with an order-free hash of the set (sum of 64-bit random weights of its
samples, modulo 2**64): two different sets of one block share a hash with probability ~G²/2**64
(G sets), about 1e-11 for 10,000 sets.
"""
import numpy as np

TILE = 8                # side of the pixel tiles whose candidates are found with one tree query
PIXEL_CHUNK = 1 << 13   # pixels ranked at once (their arrays stay in the processor's cache)
HASH_SEED = 20240611
TIE_TOLERANCE = 1e-9    # squared distances this close (relative) count as a tie


class TileNeighbourSets:
    """k nearest samples (indices into the tree's points) of every pixel of grid blocks."""

    def __init__(self, tree, k):
        self.tree = tree
        self.n = tree.n
        self.k = int(k)
        self.points = tree.data
        self.weights = hash_weights(self.n)

    def label_sorted(self, xs, ys):
        """(labels (rows, cols) int64, sets (G, k) int64 sorted, flat pixel indices ordered by label
        stably) for the pixel lattice of column coordinates `xs` and row coordinates `ys` (the tree's
        coordinates): pixel (i, j) uses the samples sets[labels[i, j]]; the order is the sort that
        grouped the pixels, so that callers need not sort them again."""
        cols, rows = len(xs), len(ys)
        tiles = _Tiles(xs, ys)
        distance, index = self._candidates(tiles.centres, tiles.reach)
        k = self.k
        beyond = distance[:, k] if distance.shape[1] > k else np.full(len(distance), np.inf)
        certain = np.minimum((distance <= (beyond - tiles.reach)[:, None]).sum(axis=1), k)
        possible = (distance <= (distance[:, k - 1] + tiles.reach)[:, None]).sum(axis=1)
        ranking = _Ranking(self, distance, index, certain, possible - certain)
        # an order-k Voronoi cell is convex (an intersection of half-planes), so a tile whose four
        # corner pixels have the same set, none of them on a tie, has that set at every pixel
        # (resolved tiles take all or none of their uncertain candidates at every pixel)
        corner_hashes = np.repeat(ranking.base[:, None], 4, axis=1)
        corner_ties = np.zeros((len(tiles.centres), 4), dtype=bool)
        for part in ranking.by_width(np.flatnonzero(~ranking.resolved), 4):
            tile_hashes, tie = ranking.lattice_hashes(part, *tiles.corner_lattices(part))
            corner_hashes[part], corner_ties[part] = tile_hashes.reshape(-1, 4), tie.reshape(-1, 4)
        uniform = (corner_hashes == corner_hashes[:, :1]).all(axis=1) & ~corner_ties.any(axis=1)
        hashes = tiles.spread(corner_hashes[:, 0])
        # the other tiles: every pixel of their TILE x TILE lattices ranked
        tied = [np.empty(0, dtype=np.int64)]
        for part in ranking.by_width(np.flatnonzero(~uniform), TILE ** 2):
            pixels, inside, x, y = tiles.lattices(part)
            tile_hashes, tie = ranking.lattice_hashes(part, x, y)
            hashes[pixels[inside]] = tile_hashes[inside]
            tied.append(pixels[inside & tie])
        # pixels with two samples at the same distance across the k-th place: the k-d tree's own
        # choice, so that the sets equal a per-pixel query exactly
        tied = np.sort(np.concatenate(tied))  # chunks come by width, not pixel: sorted for searchsorted
        _, tied_x, tied_y = tiles.of_pixels(tied)
        tied_sets = np.sort(self._query(np.column_stack([tied_x, tied_y]), k)[1], axis=1)
        hashes[tied] = self.weights[tied_sets].sum(axis=1, dtype=np.uint64)
        first, labels, order = group_hashes(hashes)
        sets = ranking.sets(*tiles.of_pixels(first))
        from_tree = np.isin(first, tied)
        sets[from_tree] = tied_sets[np.searchsorted(tied, first[from_tree])]
        return labels.reshape(rows, cols), np.sort(sets, axis=1), order

    def _candidates(self, centres, reach):
        """Nearest samples of the tile centres, sorted, enough of them that every sample beyond the
        last is surely outside every pixel's set; padded with distance inf and index n."""
        kk = min(self.n, self.k + max(8, self.k // 2))
        distance, index = self._query(centres, kk)
        while kk < self.n:
            short = distance[:, -1] <= distance[:, self.k - 1] + reach
            if not short.any():
                break
            kk = min(self.n, 2 * kk)
            more_distance, more_index = self._query(centres[short], kk)
            distance = np.pad(distance, ((0, 0), (0, kk - distance.shape[1])), constant_values=np.inf)
            index = np.pad(index, ((0, 0), (0, kk - index.shape[1])), constant_values=self.n)
            distance[short], index[short] = more_distance, more_index
        return distance, index

    def _query(self, points, kk):
        """The tree's kk nearest, asked as kriging.NeighbourSearch asks (the same choice on ties)."""
        distance, index = self.tree.query(points, k=list(range(1, kk + 1)))
        return distance.reshape(len(points), kk), index.reshape(len(points), kk)


def hash_weights(n):
    """One random uint64 per sample (fixed seed): a set's hash is the sum of its samples' weights."""
    rng = np.random.default_rng(HASH_SEED)
    return rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)


def group_by_set(sets, weights):
    """(labels (targets,), unique sets (G, N) sorted) of neighbour sets (targets, N) padded with -1,
    grouped by the order-free hash of each set (`weights`: one uint64 per sample)."""
    padded = np.append(weights, np.uint64(0))  # index -1 (padding) weighs nothing
    hashes = padded[sets].sum(axis=1, dtype=np.uint64)
    first, labels, _ = group_hashes(hashes)
    return labels, np.sort(sets[first], axis=1)


def group_hashes(hashes):
    """np.unique(hashes, return_index=True, return_inverse=True)[1:] (first index of each distinct
    hash in ascending order of hash, label of each element) and the stable sort order behind them."""
    order = np.argsort(hashes, kind='stable')
    ordered = hashes[order]
    new = np.empty(len(order), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = np.cumsum(new) - 1
    return order[new], labels, order


class _Tiles:
    """TILE x TILE tiles of a pixel lattice: centres, 2 x half-diagonal, and tile of each pixel."""

    def __init__(self, xs, ys):
        self.xs, self.ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        self.tile_cols = -(-len(xs) // TILE)
        first_col = np.arange(self.tile_cols) * TILE
        last_col = np.minimum(first_col + TILE, len(xs)) - 1
        first_row = np.arange(-(-len(ys) // TILE)) * TILE
        last_row = np.minimum(first_row + TILE, len(ys)) - 1
        cx = 0.5 * (self.xs[first_col] + self.xs[last_col])
        cy = 0.5 * (self.ys[first_row] + self.ys[last_row])
        hx = 0.5 * np.abs(self.xs[last_col] - self.xs[first_col])
        hy = 0.5 * np.abs(self.ys[last_row] - self.ys[first_row])
        rows = len(first_row)
        self.centres = np.column_stack([np.tile(cx, rows), np.repeat(cy, self.tile_cols)])
        self.corner_x = np.stack([self.xs[first_col], self.xs[last_col]], axis=1)  # (tile cols, 2)
        self.corner_y = np.stack([self.ys[first_row], self.ys[last_row]], axis=1)  # (tile rows, 2)
        # 2r, a hair wider so that rounding in the distances can only make a sample "uncertain"
        self.reach = 2.0 * np.hypot(np.tile(hx, rows), np.repeat(hy, self.tile_cols)) * (1 + 1e-9) + 1e-12

    def corner_lattices(self, tiles):
        """The four corner pixels of tiles as 2 x 2 lattices: column x (T, 2), row y (T, 2)."""
        tile_row, tile_col = np.divmod(tiles, self.tile_cols)
        return self.corner_x[tile_col], self.corner_y[tile_row]

    def spread(self, values):
        """Per-tile values (tiles,) as flat per-pixel values (rows x cols)."""
        per_tile = values.reshape(-1, self.tile_cols)
        pixels = np.repeat(np.repeat(per_tile, TILE, axis=0), TILE, axis=1)
        return pixels[:len(self.ys), :len(self.xs)].ravel()

    def lattices(self, tiles):
        """Pixels of whole tiles as TILE x TILE lattices: (flat pixel indices (T, TILE, TILE), True
        where inside the grid (edge tiles are cut), column x (T, TILE), row y (T, TILE))."""
        tile_row, tile_col = np.divmod(tiles, self.tile_cols)
        offsets = np.arange(TILE)
        col = tile_col[:, None] * TILE + offsets
        row = tile_row[:, None] * TILE + offsets
        inside = (row < len(self.ys))[:, :, None] & (col < len(self.xs))[:, None, :]
        col, row = np.minimum(col, len(self.xs) - 1), np.minimum(row, len(self.ys) - 1)
        return row[:, :, None] * len(self.xs) + col[:, None, :], inside, self.xs[col], self.ys[row]

    def of_pixels(self, pixels):
        """(tile, x, y) of flat pixel indices (row-major)."""
        row, col = np.divmod(pixels, len(self.xs))
        return (row // TILE) * self.tile_cols + col // TILE, self.xs[col], self.ys[row]


class _Ranking:
    """Per-pixel choice among each tile's uncertain candidates (the tile's nearest samples between
    the two bounds): each pixel takes the `k - certain` nearest of them."""

    def __init__(self, sets, distance, index, certain, uncertain):
        self.weights, self.k = sets.weights, sets.k
        self.index, self.certain = index, certain
        self.need, self.uncertain = self.k - certain, uncertain
        width = int(uncertain.max()) if len(uncertain) else 0
        offsets = np.arange(width)[None, :]
        valid = offsets < uncertain[:, None]
        position = np.minimum(certain[:, None] + offsets, index.shape[1] - 1)
        self.candidate = np.where(valid, np.take_along_axis(index, position, axis=1), 0)  # (tiles, width)
        self.cx = np.where(valid, sets.points[self.candidate, 0], np.inf)
        self.cy = np.where(valid, sets.points[self.candidate, 1], np.inf)
        self.cw = np.where(valid, self.weights[self.candidate], np.uint64(0))
        safe = np.minimum(index, sets.n - 1)
        in_certain = np.arange(index.shape[1])[None, :] < certain[:, None]
        self.base = np.where(in_certain, self.weights[safe], np.uint64(0)).sum(axis=1, dtype=np.uint64)
        # tiles whose pixels all take none or all of the uncertain candidates need no ranking
        self.resolved = (self.need == 0) | (self.need == uncertain)
        self.base[self.need == uncertain] += self.cw[self.need == uncertain].sum(axis=1, dtype=np.uint64)

    def _squared(self, tile, x, y):
        dx = self.cx[tile] - x[:, None]
        dy = self.cy[tile] - y[:, None]
        dx *= dx
        dy *= dy
        dx += dy
        return dx  # inf where a tile has fewer uncertain candidates than the widest

    def by_width(self, tiles, pixels_per_tile):
        """Chunks of PIXEL_CHUNK pixels of tiles with about as many uncertain candidates (a chunk's
        candidate arrays are as wide as its widest tile needs)."""
        tiles = tiles[np.argsort(self.uncertain[tiles], kind='stable')]
        chunk = max(PIXEL_CHUNK // pixels_per_tile, 1)
        return [tiles[start:start + chunk] for start in range(0, len(tiles), chunk)]

    def lattice_hashes(self, tiles, x, y):
        """(set hash, True where the choice hangs on a tie in distance) of pixel lattices (T, b, a) of
        unresolved tiles, from each tile's column coordinates x (T, a) and row coordinates y (T, b):
        squared distances as dy² + dx² of columns and rows (the same values as pixel by pixel), only
        as many candidates wide as the widest of these tiles has."""
        width = int(self.uncertain[tiles].max())
        dx = self.cx[tiles, None, :width] - x[:, :, None]
        dy = self.cy[tiles, None, :width] - y[:, :, None]
        dx *= dx
        dy *= dy
        squared = dy[:, :, None, :] + dx[:, None, :, :]                      # (T, b, a, width)
        shape = squared.shape[:3]
        need = np.broadcast_to(self.need[tiles, None, None], shape).reshape(-1)
        weights = np.broadcast_to(self.cw[tiles, None, None, :width], squared.shape).reshape(-1, width)
        added, tie = self._choose(need, squared.reshape(-1, width), weights)
        return (self.base[tiles, None, None] + added.reshape(shape)), tie.reshape(shape)

    @staticmethod
    def _choose(need, squared, weights):
        """(sum of the weights of the `need` nearest candidates, True where the choice hangs on a tie
        in distance) of rows of squared distances. The need-th smallest squared distance is the
        threshold of the chosen candidates (a ranked tile has more uncertain candidates than it needs,
        so the next one exists)."""
        ordered = np.sort(squared, axis=1)
        along = np.arange(len(need))
        threshold, following = ordered[along, need - 1], ordered[along, need]
        chosen = squared <= threshold[:, None]
        added = np.where(chosen, weights, np.uint64(0)).sum(axis=1, dtype=np.uint64)
        return added, following <= threshold * (1 + TIE_TOLERANCE)

    def sets(self, tile, x, y):
        """(pixels, k) sample indices of the given pixels' sets."""
        order = np.argsort(self._squared(tile, x, y), axis=1, kind='stable')
        candidate = np.take_along_axis(self.candidate[tile], order, axis=1)
        result = np.empty((len(tile), self.k), dtype=np.int64)
        for row, (t, certain) in enumerate(zip(tile, self.certain[tile])):
            result[row, :certain] = self.index[t, :certain]
            result[row, certain:] = candidate[row, :self.k - certain]
        return result
