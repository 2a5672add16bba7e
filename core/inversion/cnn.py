"""The small regression CNN of Cheng et al. (2023), ion-adsorption rare-earth ore on GF-2, in numpy.

Input: the S x S tile of standardised band values (core/inversion/tiling.py; S = 4 for up to 16
bands, the paper's 4x4 matrix). Layers (the paper's: 2x2 convolutions with ReLU, max pooling, a
fully connected layer, dropout with keep probability 0.7, learning rate 0.001, 5000 iterations):
  conv 2x2 'same' (C1) -> ReLU -> max-pool 2x2/2 (S -> S/2)
  -> conv 2x2 'same' (C2) -> ReLU -> max-pool 2x2/2 (S/2 -> S/4; 4x4 -> 2x2 -> 1x1)
  -> fully connected (H) -> ReLU -> dropout (training only) -> fully connected (1).
Our choices, where the paper gives none: widths C1 = 16, C2 = 32, H = 64, batches of 64, He
initialisation, standardised inputs and target, the Adam optimiser (Kingma & Ba 2015), and the
loss: mean squared error of the standardised target (the paper names softmax cross-entropy, which
has no meaning for one continuous output).

Hand-written because the plugin must not depend on a deep-learning framework at run time and the
network is tiny; gradients are checked against finite differences in test/test_cnn.py.
'same' padding puts the one padding row/column of a 2x2 kernel after the data, as TensorFlow
does (ONNX pads = [0, 0, 1, 1]); the paper names no framework beyond Python.
Internal layout is NHWC with HWIO kernels; the ONNX export of the 4x4 tile is the same network as
matrix products over the cells that hold data (matrix_graph), larger tiles keep ONNX's NCHW/OIHW
convolutions (convolution_graph).
"""
from dataclasses import dataclass, field

import numpy as np

from ..errors import CancelledError
from ..linalg import matmul, single_threaded_blas
from .tiling import CELLS, TILE, tile_features, tile_indices, tile_side

OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # kernel cells (row, column), row-major
ONNX_OPSET = 17   # onnxruntime >= 1.13 runs it (1.32 in our environment)
ONNX_IR_VERSION = 8  # the IR version that goes with opset 17, readable by older runtimes
INPUT_NAME = 'input'
# what the paper fixes and what we chose (help texts and reports say so)
CHOICES = ('Paper (Cheng et al. 2023): the 4 band values tiled 4 times into a 4x4 matrix, 2x2 '
           'convolutions, max pooling, a fully connected layer, dropout keep probability 0.7, '
           'learning rate 0.001, 5000 iterations. Ours: any band count (tiling.py), 16/32 filters, '
           '64 hidden units, batches of 64, standardised inputs and target, He initialisation, the '
           'Adam optimiser and a mean-squared-error loss.')
OUTPUT_NAME = 'prediction'


@dataclass(frozen=True)
class CnnConfig:
    filters1: int = 16
    filters2: int = 32
    hidden: int = 64
    keep_prob: float = 0.7        # dropout keep probability (paper)
    learning_rate: float = 0.001  # Adam step size (paper)
    iterations: int = 5000        # mini-batch updates (paper)
    batch_size: int = 64
    seed: int = 0

    def architecture(self, side=TILE):
        return (f'tile {side}x{side} -> conv2x2 same {self.filters1} -> ReLU -> maxpool 2x2 -> conv2x2 '
                f'same {self.filters2} -> ReLU -> maxpool 2x2 -> FC {self.hidden} -> ReLU -> dropout keep '
                f'{self.keep_prob:g} -> FC 1; MSE, Adam lr {self.learning_rate:g}, '
                f'{self.iterations} iterations, batch {self.batch_size}, seed {self.seed}')


def init_params(config, rng, side=TILE):
    """He-normal weights (He et al. 2015, for ReLU layers), zero biases; float64. The fully
    connected layer takes the (side/4)² cells x C2 filters left after the two poolings."""
    def he(shape, fan_in):
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    c1, c2, h = config.filters1, config.filters2, config.hidden
    flat = c2 * (side // TILE) ** 2
    return {'w1': he((2, 2, 1, c1), 4), 'b1': np.zeros(c1),
            'w2': he((2, 2, c1, c2), 4 * c1), 'b2': np.zeros(c2),
            'w3': he((flat, h), flat), 'b3': np.zeros(h),
            'w4': he((h, 1), h) * 0.5, 'b4': np.zeros(1)}


def _columns(x):
    """(N, H, W, C) -> (N, H, W, 4C): the 2x2 neighbourhood of each cell, zero-padded after."""
    n, height, width, channels = x.shape
    padded = np.zeros((n, height + 1, width + 1, channels), dtype=x.dtype)
    padded[:, :height, :width] = x
    return np.concatenate([padded[:, i:i + height, j:j + width] for i, j in OFFSETS], axis=3)


def _columns_backward(d_columns, channels):
    """Adjoint of _columns: scatter-add (N, H, W, 4C) gradients back onto (N, H, W, C)."""
    n, height, width, _ = d_columns.shape
    padded = np.zeros((n, height + 1, width + 1, channels), dtype=d_columns.dtype)
    for k, (i, j) in enumerate(OFFSETS):
        padded[:, i:i + height, j:j + width] += d_columns[..., k * channels:(k + 1) * channels]
    return padded[:, :height, :width]


def _conv(columns, kernel, bias):
    """ReLU of a 2x2 convolution: (N, H, W, 4C) neighbourhoods times the (2, 2, C, C') kernel as one
    matrix product of every cell (optimised BLAS in QGIS too, core.linalg), plus the bias."""
    products = matmul(columns.reshape(-1, columns.shape[3]), kernel.reshape(columns.shape[3], -1))
    return np.maximum(products.reshape(*columns.shape[:3], -1) + bias, 0.0)


def _pool(x):
    """2x2/2 max pooling of (N, H, W, C); returns the output and the arg-max index per window (0-3,
    the window's cells in OFFSETS order)."""
    cells = [x[:, i::2, j::2] for i, j in OFFSETS]
    pooled = np.maximum(np.maximum(cells[0], cells[1]), np.maximum(cells[2], cells[3]))
    # the first cell holding the maximum (as argmax) routes the gradient where tiling makes exact ties
    index = np.full(pooled.shape, 3, dtype=np.int8)
    for k in (2, 1, 0):
        index[cells[k] == pooled] = k
    return pooled, index


def _pool_backward(d_out, index):
    n, height, width, channels = d_out.shape
    d_in = np.empty((n, 2 * height, 2 * width, channels), dtype=d_out.dtype)
    for k, (i, j) in enumerate(OFFSETS):
        d_in[:, i::2, j::2] = (index == k) * d_out
    return d_in


def forward(params, tiles, keep_mask=None):
    """Standardised (N, 1, S, S) tiles -> ((N,) standardised output, cache for backward).
    keep_mask: (N, hidden) inverted-dropout multipliers (0 or 1/keep), None at inference."""
    side = tiles.shape[-1]
    x = tiles.reshape(-1, side, side, 1)
    cols1 = _columns(x)
    a1 = _conv(cols1, params['w1'], params['b1'])
    p1, i1 = _pool(a1)
    cols2 = _columns(p1)
    a2 = _conv(cols2, params['w2'], params['b2'])
    p2, i2 = _pool(a2)
    flat = p2.reshape(p2.shape[0], -1)
    hidden = np.maximum(matmul(flat, params['w3']) + params['b3'], 0.0)
    dropped = hidden if keep_mask is None else hidden * keep_mask
    out = (matmul(dropped, params['w4']) + params['b4'])[:, 0]
    cache = (cols1, a1, i1, cols2, a2, i2, flat, hidden, dropped, keep_mask)
    return out, cache


def loss_and_gradients(params, tiles, target, keep_mask=None):
    """Mean squared error of the standardised target and its gradient for every parameter."""
    out, (cols1, a1, i1, cols2, a2, i2, flat, hidden, dropped, keep_mask) = \
        forward(params, tiles, keep_mask)
    n = target.shape[0]
    residual = out - target
    d_out = (2.0 / n) * residual[:, None]
    grads = {'w4': matmul(dropped.T, d_out), 'b4': d_out.sum(axis=0)}
    d_hidden = matmul(d_out, params['w4'].T)
    if keep_mask is not None:
        d_hidden = d_hidden * keep_mask
    d_hidden = d_hidden * (hidden > 0)
    grads['w3'], grads['b3'] = matmul(flat.T, d_hidden), d_hidden.sum(axis=0)
    d_a2 = _pool_backward(matmul(d_hidden, params['w3'].T).reshape(i2.shape), i2) * (a2 > 0)
    c1, c2 = a1.shape[3], a2.shape[3]
    d_a2_cells = d_a2.reshape(-1, c2)
    grads['w2'] = matmul(cols2.reshape(-1, 4 * c1).T, d_a2_cells).reshape(params['w2'].shape)
    grads['b2'] = d_a2.sum(axis=(0, 1, 2))
    d_cols2 = matmul(d_a2_cells, params['w2'].reshape(4 * c1, c2).T)
    d_p1 = _columns_backward(d_cols2.reshape(*d_a2.shape[:3], 4 * c1), c1)
    d_a1 = _pool_backward(d_p1, i1) * (a1 > 0)
    grads['w1'] = matmul(cols1.reshape(-1, 4).T, d_a1.reshape(-1, c1)).reshape(params['w1'].shape)
    grads['b1'] = d_a1.sum(axis=(0, 1, 2))
    return float(np.mean(residual ** 2)), grads


@dataclass
class CnnModel:
    """A trained CNN with the standardisation it learnt on the training features and target."""
    config: CnnConfig
    params: dict
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model_type = 'cnn'
    input_layout = 'tiled'

    @property
    def side(self):
        """Side of the input tile (4 for up to 16 features)."""
        return tile_side(self.x_mean.size)

    def standardised_tiles(self, features):
        return tile_features((np.asarray(features, np.float64) - self.x_mean) / self.x_scale) \
            .astype(np.float64)

    def predict(self, features):
        """(N, F) raw features -> (N,) predictions in target units (no dropout)."""
        out, _ = forward(self.params, self.standardised_tiles(features))
        return out * self.y_scale + self.y_mean

    def to_onnx(self):
        return cnn_onnx(self)


def train_cnn(features, target, config=None, progress=None, cancel=None):
    """Fit the CNN on (N, F) raw features and (N,) target with Adam on shuffled mini-batches.
    Standardisation (mean, SD) is learnt here and travels with the model; the caller checks that no
    feature and not the target is constant."""
    config = config or CnnConfig()
    features = np.asarray(features, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    rng = np.random.default_rng(config.seed)
    model = CnnModel(config, init_params(config, rng, tile_side(features.shape[1])),
                     features.mean(axis=0), features.std(axis=0), float(target.mean()), float(target.std()))
    tiles = model.standardised_tiles(features)
    y = (target - model.y_mean) / model.y_scale
    n = y.size
    batch = min(config.batch_size, n)
    moments = {key: (np.zeros_like(value), np.zeros_like(value)) for key, value in model.params.items()}
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8  # Adam defaults (Kingma & Ba 2015)
    losses = np.empty(config.iterations)
    order, position = rng.permutation(n), 0
    with single_threaded_blas():  # its products are small: BLAS threads would only wait
        for step in range(1, config.iterations + 1):
            if position + batch > n:
                order, position = rng.permutation(n), 0
            chosen = order[position:position + batch]
            position += batch
            mask = (rng.random((batch, config.hidden)) < config.keep_prob) / config.keep_prob
            losses[step - 1], grads = loss_and_gradients(model.params, tiles[chosen], y[chosen], mask)
            rate = config.learning_rate * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
            for key, gradient in grads.items():
                m, v = moments[key]
                m *= beta1
                m += (1 - beta1) * gradient
                v *= beta2
                v += (1 - beta2) * gradient ** 2
                model.params[key] -= rate * m / (np.sqrt(v) + epsilon)
            if step % 100 == 0:
                if cancel is not None and cancel():
                    raise CancelledError('training cancelled')
                if progress is not None:
                    progress(step / config.iterations)
    model.losses = losses
    return model


def cnn_onnx(model, graph=None):
    """ONNX graph of a CnnModel: raw (N, 1, S, S) tiles in, (N, 1) target units out; the feature
    standardisation and the target de-standardisation are part of the graph. `graph` builds the
    nodes: by default the paper's 4x4 tile gets the equivalent matrix graph (matrix_graph), larger
    tiles the convolutions as trained (convolution_graph, which benchmarks compare with)."""
    from ..dependencies import require
    onnx = require('onnx')
    graph = graph or (matrix_graph if model.side == TILE else convolution_graph)
    nodes, initializers = graph(model, onnx)
    float_type = onnx.TensorProto.FLOAT
    side = model.side
    graph = onnx.helper.make_graph(
        nodes, 'rsgeochem_cnn',
        [onnx.helper.make_tensor_value_info(INPUT_NAME, float_type, ['N', 1, side, side])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, float_type, ['N', 1])], initializers)
    onnx_model = onnx.helper.make_model(graph, producer_name='rsgeochem',
                                        opset_imports=[onnx.helper.make_opsetid('', ONNX_OPSET)])
    onnx_model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _tensor(onnx, name, array, dtype=np.float32):
    return onnx.numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def convolution_graph(model, onnx):
    """(nodes, initializers): standardisation, Conv, MaxPool and Gemm nodes, layer by layer as
    trained (any tile side)."""
    cells = tile_indices(model.x_mean.size)
    side = model.side
    p = model.params
    # our flatten runs over (row, column, filter) of the pooled NHWC map, ONNX's over (filter, row,
    # column) of NCHW: reorder the fully connected layer's rows (the identity for a 4x4 tile)
    pooled = side // TILE
    w3 = p['w3'].reshape(pooled, pooled, -1, p['w3'].shape[1]).transpose(2, 0, 1, 3)
    initializers = [_tensor(onnx, name, array) for name, array in (
        ('x_mean', model.x_mean[cells].reshape(1, 1, side, side)),
        ('x_scale', model.x_scale[cells].reshape(1, 1, side, side)),
        ('w1', p['w1'].transpose(3, 2, 0, 1)), ('b1', p['b1']),
        ('w2', p['w2'].transpose(3, 2, 0, 1)), ('b2', p['b2']),
        ('w3', w3.reshape(p['w3'].shape)), ('b3', p['b3']),
        ('w4', p['w4']), ('b4', p['b4']),
        ('y_scale', [model.y_scale]), ('y_mean', [model.y_mean]))]
    same = {'kernel_shape': [2, 2], 'pads': [0, 0, 1, 1], 'strides': [1, 1]}
    pool = {'kernel_shape': [2, 2], 'strides': [2, 2]}
    node = onnx.helper.make_node
    nodes = [
        node('Sub', [INPUT_NAME, 'x_mean'], ['centred']),
        node('Div', ['centred', 'x_scale'], ['standardised']),
        node('Conv', ['standardised', 'w1', 'b1'], ['conv1'], **same),
        node('Relu', ['conv1'], ['relu1']),
        node('MaxPool', ['relu1'], ['pool1'], **pool),
        node('Conv', ['pool1', 'w2', 'b2'], ['conv2'], **same),
        node('Relu', ['conv2'], ['relu2']),
        node('MaxPool', ['relu2'], ['pool2'], **pool),
        node('Flatten', ['pool2'], ['flat'], axis=1),
        node('Gemm', ['flat', 'w3', 'b3'], ['fc1']),
        node('Relu', ['fc1'], ['hidden']),
        node('Gemm', ['hidden', 'w4', 'b4'], ['fc2']),
        node('Mul', ['fc2', 'y_scale'], ['scaled']),
        node('Add', ['scaled', 'y_mean'], [OUTPUT_NAME]),
    ]
    return nodes, initializers


# cells of the 2x2 map after the first pooling in the order of the matrix graph's columns: each cell
# of the second convolution reads a contiguous run of them (its 2x2 neighbourhood inside the map)
POOLED_ORDER = ((0, 0), (0, 1), (1, 1), (1, 0))


def conv1_matrices(model):
    """The first convolution of the 4x4 tile as one matrix product of the raw feature vector:
    (weights (F, 4 window cells x 4 pooled cells x C1), bias), columns ordered by the cell's place
    in its pooling window (OFFSETS), its window (POOLED_ORDER), then the filter. Cell (r, c) of the
    tile holds feature tile_indices[4r + c]; padding cells hold zeros of the standardised tile, so
    they add nothing to a weight and nothing to the folded bias."""
    p, features = model.params, model.x_mean.size
    cells = tile_indices(features).reshape(TILE, TILE)
    filters = p['w1'].shape[3]
    taps = np.zeros((features, TILE, TILE, filters))  # d conv1[r, c, k] / d standardised feature f
    for r in range(TILE):
        for c in range(TILE):
            for i, j in OFFSETS:
                if r + i < TILE and c + j < TILE:
                    taps[cells[r + i, c + j], r, c] += p['w1'][i, j, 0]
    weights = taps / model.x_scale[:, None, None, None]
    bias = p['b1'] - np.einsum('frck,f->rck', taps, model.x_mean / model.x_scale)
    order = [(2 * row + i, 2 * column + j) for i, j in OFFSETS for row, column in POOLED_ORDER]
    return (np.concatenate([weights[:, r, c] for r, c in order], axis=1),
            np.concatenate([bias[r, c] for r, c in order]))


def conv2_blocks(w2):
    """The second convolution of the pooled 2x2 map, per output cell (OFFSETS order): (first, end,
    weights) where columns first:end of the pooled map (POOLED_ORDER x C1) hold every cell it reads
    and weights is ((end - first), C2): only taps that touch data, no padding zeros."""
    channels = w2.shape[2]
    blocks = []
    for row, column in OFFSETS:
        taps = {POOLED_ORDER.index((row + i, column + j)): w2[i, j]
                for i, j in OFFSETS if row + i < 2 and column + j < 2}
        first, last = min(taps), max(taps)
        weights = np.zeros(((last - first + 1) * channels, w2.shape[3]))
        for position, kernel in taps.items():
            weights[(position - first) * channels:(position - first + 1) * channels] = kernel
        blocks.append((first * channels, (last + 1) * channels, weights))
    return blocks


def matrix_graph(model, onnx):
    """(nodes, initializers) of the 4x4-tile CNN as matrix products over the cells that hold data:
    the standardisation folded into the first convolution, which reads the F distinct features
    (the tile's first F cells) instead of the tile; each convolution cell a product over only the
    taps inside the map (the second convolution: 4.6 k instead of 8.2 k multiply-adds per pixel); max
    pooling as ReduceMax over the window's cells, ReLU after it (they commute); the target scale
    folded into the last layer, computed as a row so that onnxruntime runs a wide product. Same
    arithmetic as forward up to float32 rounding (test_cnn.py); ~25 % less CPU than
    convolution_graph in onnxruntime (bench/bench_apply.py)."""
    p, features = model.params, model.x_mean.size
    filters1 = p['w1'].shape[3]
    w1, b1 = conv1_matrices(model)
    initializers = [_tensor(onnx, 'w1', w1), _tensor(onnx, 'b1', b1),
                    _tensor(onnx, 'w3', p['w3']), _tensor(onnx, 'b3', p['b3']),
                    _tensor(onnx, 'w4', (p['w4'] * model.y_scale).T),
                    _tensor(onnx, 'b4', p['b4'] * model.y_scale + model.y_mean)]

    def constant(name, values):
        initializers.append(_tensor(onnx, name, values, np.int64))
        return name

    node = onnx.helper.make_node
    nodes = [node('Reshape', [INPUT_NAME, constant('cell_shape', [0, CELLS])], ['cells'])]
    axis = constant('axis', [1])
    if features < CELLS:  # cell i holds feature i mod F: the first F cells are the features
        nodes.append(node('Slice', ['cells', constant('zero', [0]), constant('features', [features]),
                                    axis], ['raw']))
    nodes += [
        node('Gemm', ['raw' if features < CELLS else 'cells', 'w1', 'b1'], ['conv1']),
        node('Reshape', ['conv1', constant('window_shape1', [0, len(OFFSETS), -1])], ['windows1']),
        node('ReduceMax', ['windows1'], ['max1'], axes=[1], keepdims=0),
        node('Relu', ['max1'], ['pool1']),
    ]
    conv2 = []
    for number, (first, end, weights) in enumerate(conv2_blocks(p['w2'])):
        source = 'pool1'
        if end - first < len(POOLED_ORDER) * filters1:
            source = f'pool1_{number}'
            nodes.append(node('Slice', ['pool1', constant(f'first{number}', [first]),
                                        constant(f'end{number}', [end]), axis], [source]))
        initializers += [_tensor(onnx, f'w2_{number}', weights), _tensor(onnx, f'b2_{number}', p['b2'])]
        nodes.append(node('Gemm', [source, f'w2_{number}', f'b2_{number}'], [f'conv2_{number}']))
        conv2.append(f'conv2_{number}')
    nodes += [  # one cell is left after the second pooling: its C2 filters are the flattened map
        node('Max', conv2, ['max2']),
        node('Relu', ['max2'], ['pool2']),
        node('Gemm', ['pool2', 'w3', 'b3'], ['fc1']),
        node('Relu', ['fc1'], ['hidden']),
        node('Gemm', ['w4', 'hidden', 'b4'], ['row'], transB=1),
        node('Reshape', ['row', constant('output_shape', [-1, 1])], [OUTPUT_NAME]),
    ]
    return nodes, initializers
