"""Applying an ONNX regression model over a raster, block by block (see the ONNX model contract:
'pixel' (N, F), 'tiled' (N, 1, S, S) (core.inversion.tiling: S = 4 for up to 16 bands) and 'patch'
(N, F, k, k) inputs; one float32 output per pixel).

The onnxruntime sessions (SessionPool: one single-threaded session per thread, or one session with
every thread for models whose predictions depend on the thread count) are created once.
Memory is bounded by the block budget whatever the raster size: a quarter goes to the model's
batches of valid pixels (sized from the per-sample intermediate tensors found by ONNX shape
inference, split between the sessions), the rest to two blocks of rows (the one being predicted and
the next one, read meanwhile by a background thread that also writes the output); GDAL's block
cache is released as blocks are consumed.
"""
import collections
import math
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from osgeo import gdal
from scipy import ndimage

from ..dependencies import require
from ..errors import InputError
from ..geostat.surface_samples import band_field_names
from ..raster.blockio import (
    DEFAULT_MEMORY_MB,
    DEFAULT_NODATA,
    RasterReader,
    RasterWriter,
    Window,
    block_windows,
    check_cancel,
    raster_info,
    rows_per_block,
)
from .onnx_metadata import parse_metadata
from .tiling import TILE, tile_features, tile_side

# Processing parameter keys the errors name (the algorithm applyinversionmodel uses the same keys)
INPUT, MODEL, BANDS, MASK, OUTPUT = 'INPUT', 'MODEL', 'BANDS', 'MASK', 'OUTPUT'
FLOAT_BYTES = 4
# onnxruntime's memory per sample is taken as the sum of the graph's per-sample intermediate tensors
# (it reuses buffers: 1.6-3.5 KB measured against a 4.2 KB sum for the paper CNN), at least:
MIN_RUNTIME_BYTES = 1024
RUNTIME_SHARE = 4   # the model's batches get 1/RUNTIME_SHARE of the block memory budget
MIN_BATCH = 256
# a band value is outside what the model was fitted on beyond RANGE_MARGIN of the training span
# (metadata feature_range) or, for models that only store their standardisation, beyond
# SD_RANGE standard deviations from the training mean
RANGE_MARGIN = 0.1
SD_RANGE = 4.0
OUTSIDE, INSIDE, FLAG_NODATA = 1, 0, 255
# features whose training means all lie within ±REFLECTANCE_LIMIT are taken for reflectance (0-1)
REFLECTANCE_LIMIT = 2.0
INTEGER_TYPES = ('Byte', 'Int8', 'UInt16', 'Int16', 'UInt32', 'Int32', 'UInt64', 'Int64')
# onnxruntime's throughput peaks at a few thousand pixels per run (its intermediates stay in the
# processor's caches) and falls beyond: the CNN's matrix graph (1 KB of first-layer output per
# pixel) takes 0.42 CPU us per pixel in apply at 2048, 0.45 at 4096, 0.51 at 8192 (bench_apply's raster)
MAX_BATCH = 2048
# operators onnxruntime's CPU kernels split between threads by output element (same predictions
# with any thread count: checked on the CNN, MLR and PLSR models traininversionmodel writes, both
# CNN graphs, test_cnn.py; a maximum is exact in any order); a TreeEnsembleRegressor adds its
# trees up in per-thread parts (1e-5 apart) and is not one of them
THREAD_INVARIANT_OPS = frozenset({
    'Add', 'Sub', 'Mul', 'Div', 'Relu', 'Conv', 'MaxPool', 'Gemm', 'MatMul', 'Flatten', 'Reshape',
    'Cast', 'Scaler', 'LinearRegressor', 'Slice', 'Max', 'ReduceMax'})


@dataclass(frozen=True)
class ModelSpec:
    """What apply needs to know about a model's input."""
    input_name: str
    layout: str                 # pixel | tiled | patch
    n_features: int | None      # None: not fixed by the model (tiled model without metadata)
    patch_size: int             # k of the patch layout, 1 otherwise
    features: tuple             # feature names from the metadata, () without metadata
    target: str                 # output band description
    bytes_per_sample: int       # estimate of the runtime's memory per sample
    tile_side: int = TILE       # S of the tiled layout
    fitted_range: tuple = None  # (low, high, description): band values the model was fitted on
    reflectance_inputs: bool = False  # trained on reflectance-like features (metadata means within ±2)

    @property
    def halo(self):
        return self.patch_size // 2


@dataclass
class ApplyResult:
    bands: list                 # 1-based raster bands fed to the model, in input order
    layout: str
    target: str = ''            # output band description: target field (units) or 'prediction'
    batch: int = 0              # pixels per onnxruntime run at most
    blocks: int = 0             # blocks of rows
    predicted: int = 0          # pixels with a prediction
    nodata: int = 0             # pixels written as nodata (nodata input, mask, edge of a patch model)
    outside: int = 0            # predicted pixels with a band value outside the fitted range
    notes: list = field(default_factory=list)
    clipped: int = 0            # predictions below `minimum` set to it
    lowest: float = math.inf    # lowest prediction before clipping


def runtime_errors():
    """The exception classes onnxruntime raises (they derive from Exception only)."""
    state = require('onnxruntime').capi.onnxruntime_pybind11_state
    return tuple(value for value in vars(state).values()
                 if isinstance(value, type) and issubclass(value, Exception))


def open_session(model_path, threads=2):
    """An onnxruntime CPU session with `threads` intra-op threads, or InputError naming MODEL."""
    ort = require('onnxruntime')
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle onnxruntime threads sleep instead of spinning, leaving the cores to GDAL between batches
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    try:
        return ort.InferenceSession(str(model_path), options, providers=['CPUExecutionProvider'])
    except runtime_errors() as error:
        raise InputError(f'"{model_path}" is not an ONNX model onnxruntime can run ({error}); choose '
                         'an .onnx file, e.g. one written by traininversionmodel.', MODEL) from error


def per_sample_bytes(model_path, batch_dim):
    """Bytes of the intermediate tensors of one sample (ONNX shape inference over the graph; tensors
    whose first dimension is the batch dimension `batch_dim` count), or None when shapes are unknown."""
    onnx = require('onnx')
    try:
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    except (ValueError, TypeError, OSError, onnx.shape_inference.InferenceError):
        return None
    total = 0
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != batch_dim:
            continue
        sizes = [d.dim_value for d in dims[1:]]
        if any(size <= 0 for size in sizes):
            return None
        total += math.prod(sizes) * FLOAT_BYTES
    return total


def infer_layout(shape, metadata):
    """(layout, n_features or None, patch size) from the input shape (N, ...) and the metadata."""
    layout = metadata.get('input_layout')
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape[1:]]
    if len(dims) == 1 and layout in (None, 'pixel'):
        return 'pixel', dims[0], 1
    if (len(dims) == 3 and dims[0] == 1 and dims[1] == dims[2] and dims[1] and dims[1] % TILE == 0
            and layout in (None, 'tiled')):
        return 'tiled', None, 1
    if len(dims) == 3 and layout in (None, 'patch'):
        k = metadata.get('patch_size', dims[1])
        if k is not None and k % 2 == 1 and dims[1] in (None, k) and dims[2] in (None, k):
            return 'patch', dims[0], k
    expected = layout or 'pixel (N, F), tiled (N, 1, S, S), S a multiple of 4, or patch (N, F, k, k), k odd,'
    raise InputError(f'the model\'s input shape {list(shape)} does not fit the {expected} layout; choose a '
                     'per-pixel regression model (see the help).', MODEL)


def model_spec(session, model_path):
    """Check the session's input/output against the contract and describe the input."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise InputError(f'the model has {len(inputs)} inputs and {len(outputs)} outputs; apply needs '
                         'one float32 input and one output.', MODEL)
    model_input = inputs[0]
    if outputs[0].type not in ('tensor(float)', 'tensor(double)'):
        raise InputError(f'the model\'s output is {outputs[0].type}, not a float: it is a classifier (class '
                         'labels) or not a regression model; choose a regression model whose output is '
                         'the content (e.g. from "Train inversion model").', MODEL)
    if model_input.type != 'tensor(float)':
        raise InputError(f'the model\'s input is {model_input.type}, not tensor(float); re-export it '
                         'with a float32 input.', MODEL)
    batch = model_input.shape[0] if model_input.shape else None
    if isinstance(batch, int):
        raise InputError(f'the model\'s input has a fixed batch size of {batch}; re-export it with a '
                         'dynamic first dimension (e.g. dynamic_axes in torch.onnx.export).', MODEL)
    metadata = parse_metadata(session.get_modelmeta().custom_metadata_map, MODEL)
    layout, n_features, patch_size = infer_layout(model_input.shape, metadata)
    features = tuple(str(name) for name in metadata.get('features') or ())
    if features:
        if n_features not in (None, len(features)):
            raise InputError(f'the model\'s input takes {n_features} features but its metadata names '
                             f'{len(features)} ({", ".join(features)}); the model file is inconsistent.',
                             MODEL)
        n_features = len(features)
    side = model_input.shape[-1] if layout == 'tiled' else TILE
    if layout == 'tiled' and features and tile_side(len(features)) != side:
        fits = tile_side(len(features))
        raise InputError(f'the model\'s {side}x{side} tile does not fit its {len(features)} features (they '
                         f'fill a {fits}x{fits} tile); the model file is inconsistent.', MODEL)
    intermediate = per_sample_bytes(model_path, batch) if isinstance(batch, str) else None
    runtime = max(MIN_RUNTIME_BYTES, intermediate or 0)
    target = metadata.get('target_field') or 'prediction'
    if metadata.get('target_units'):
        target = f'{target} ({metadata["target_units"]})'
    means = (metadata.get('normalisation') or {}).get('mean') or []
    reflectance = bool(means) and all(abs(float(mean)) <= REFLECTANCE_LIMIT for mean in means)
    return ModelSpec(model_input.name, layout, n_features, patch_size, features, target, runtime, side,
                     fitted_range(metadata, n_features), reflectance)


def fitted_range(metadata, n_features):
    """(low, high, description) of the band values the model was fitted on, from the metadata's
    training range (widened by RANGE_MARGIN of the span) or its standardisation; None without."""
    def vector(values):
        usable = isinstance(values, list) and len(values) == n_features and None not in values
        return np.asarray(values, dtype=np.float64) if usable else None
    stored = metadata.get('feature_range') or {}
    low, high = vector(stored.get('min')), vector(stored.get('max'))
    if low is not None and high is not None:
        margin = RANGE_MARGIN * (high - low)
        return low - margin, high + margin, 'the training range'
    normalisation = metadata.get('normalisation') or {}
    mean, scale = vector(normalisation.get('mean')), vector(normalisation.get('scale'))
    if mean is None or scale is None or (not mean.any() and np.all(scale == 1)):
        return None
    return (mean - SD_RANGE * scale, mean + SD_RANGE * scale,
            f'{SD_RANGE:g} standard deviations around the training mean')


def check_not_digital_numbers(spec, info):
    """A model trained on reflectance cannot map an image of integer digital numbers (DN): its values
    are tens to thousands of times larger. InputError with the advice to calibrate first."""
    if spec.reflectance_inputs and info.data_type in INTEGER_TYPES:
        raise InputError(
            f'the image is stored as {info.data_type} integers (digital numbers, DN, or scaled reflectance) '
            'but the model was trained on reflectance (0-1); calibrate the image first, as for the model\'s '
            'training data: "Radiometric calibration" then "Dark object subtraction" (or divide scaled '
            'reflectance by its scale factor, e.g. 10000).', INPUT)


def select_bands(spec, info, bands=None):
    """1-based raster bands feeding the model, in its input order, and notes for the log.

    Explicit `bands` win (checked against the band count and the model's feature count). Otherwise
    the metadata's feature names are looked up among the band descriptions (case-insensitive, as
    written or as surfacesamples turns them into field names); a
    raster without descriptions is taken in band order when its band count equals the feature count.
    """
    descriptions = [d.strip().lower() for d in info.descriptions]
    if bands:
        bands = [int(b) for b in bands]
        wrong = [b for b in bands if not 1 <= b <= info.band_count]
        if wrong:
            raise InputError(f'band(s) {wrong} do not exist: INPUT has {info.band_count} bands.', BANDS)
        if spec.n_features is not None and len(bands) != spec.n_features:
            raise InputError(f'{len(bands)} bands given but the model takes {spec.n_features} features '
                             f'{list(spec.features) or ""}; give exactly {spec.n_features} band numbers '
                             'in the model\'s input order.', BANDS)
        if spec.layout == 'tiled' and tile_side(len(bands)) != spec.tile_side:
            low, high = (spec.tile_side - TILE) ** 2 + 1, spec.tile_side ** 2
            raise InputError(f'the model\'s {spec.tile_side}x{spec.tile_side} tile takes {low} to {high} '
                             f'bands, not {len(bands)}; give the bands it was trained on.', BANDS)
        notes = [f'band {b} ("{info.descriptions[b - 1]}") feeds feature "{name}"'
                 for b, name in zip(bands, spec.features)
                 if descriptions[b - 1] and descriptions[b - 1] != name.strip().lower()]
        return bands, notes
    if not spec.features:
        raise InputError('the model carries no rsgeochem metadata, so the band order it expects is '
                         'unknown; give the raster band numbers feeding its inputs, in order, in BANDS.',
                         BANDS)
    wanted = [name.strip().lower() for name in spec.features]
    if all(descriptions.count(name) == 1 for name in wanted):
        return [descriptions.index(name) + 1 for name in wanted], []
    # models trained on a surfacesamples layer name features after its field-safe band names
    field_names = [name.lower() for name in band_field_names(info.descriptions)]
    if any(info.descriptions) and all(field_names.count(name) == 1 for name in wanted):
        return [field_names.index(name) + 1 for name in wanted], []
    if not any(descriptions) and info.band_count == len(wanted):
        return list(range(1, len(wanted) + 1)), [
            f'INPUT has no band descriptions: bands 1-{len(wanted)} are taken as the model\'s features '
            f'{", ".join(spec.features)}, in that order.']
    missing = [name for name, key in zip(spec.features, wanted) if descriptions.count(key) != 1]
    raise InputError(
        f'the model expects the features {", ".join(spec.features)} (in this order) but INPUT\'s '
        f'{info.band_count} bands are described as {", ".join(repr(d) for d in info.descriptions)} '
        f'({", ".join(missing)} not found exactly once); give the band numbers feeding the model, '
        'in its order, in BANDS.', BANDS)


def check_mask(mask_path, grid):
    info = raster_info(mask_path, MASK)
    if not info.grid.same_as(grid):
        raise InputError('the mask must share the grid (size, extent, pixel size and CRS) of INPUT; '
                         'resample it onto INPUT first (e.g. with gdalwarp or Align rasters).', MASK)
    return RasterReader(mask_path, MASK)


def patch_valid(invalid, window, halo):
    """Centres of a block whose k x k neighbourhood (k = 2 halo + 1) is valid and inside the raster.
    `invalid` is (read rows, width); outside the raster counts as invalid."""
    padded = np.pad(invalid, ((halo - window.top, halo - window.bottom), (halo, halo)),
                    constant_values=True)
    spread = ndimage.maximum_filter(padded.view(np.uint8), size=2 * halo + 1, mode='constant')
    return spread[halo:halo + window.rows, halo:halo + invalid.shape[1]] == 0


def block_tensors(spec, values, valid, window, batch):
    """Yield (indices into the block's own pixels, float32 input tensor) for batches of at most
    `batch` valid pixels. `values` is (F, read rows, width) with any halo rows; `valid` (rows, width).
    Indices are a slice when every pixel is valid (no gather of the pixel positions)."""
    width = values.shape[2]
    if spec.layout == 'patch':
        h, k = spec.halo, spec.patch_size
        padded = np.pad(values, ((0, 0), (h - window.top, h - window.bottom), (h, h)))
        neighbourhoods = np.moveaxis(sliding_window_view(padded, (k, k), axis=(1, 2)), 0, 2)
    else:
        pixels = values.reshape(len(values), -1)
    flat = None if spec.layout != 'patch' and valid.all() else np.flatnonzero(valid)
    total = valid.size if flat is None else flat.size
    for start in range(0, total, batch):
        index = slice(start, min(start + batch, total)) if flat is None else flat[start:start + batch]
        if spec.layout == 'patch':
            tensor = np.ascontiguousarray(neighbourhoods[index // width, index % width])
        elif spec.layout == 'tiled':
            tensor = tile_features(pixels[:, index].T)
        else:
            tensor = np.ascontiguousarray(pixels[:, index].T)
        yield index, tensor


def predict(session, spec, tensor):
    try:
        output = session.run(None, {spec.input_name: tensor})[0]
    except runtime_errors() as error:
        raise InputError(f'onnxruntime could not run the model on input of shape {tensor.shape} '
                         f'({error}); check that the model fits the raster bands.', MODEL) from error
    output = np.asarray(output, dtype=np.float32).reshape(tensor.shape[0], -1)
    if output.shape[1] != 1:
        raise InputError(f'the model gives {output.shape[1]} values per pixel; apply needs one '
                         '(a regression output of shape (N, 1) or (N,)).', MODEL)
    return output[:, 0]


def batch_size(spec, n_bands, memory_mb, runs=1):
    """Pixels per onnxruntime run: the model's share of the budget, split between `runs` runs at the
    same time, over its bytes per sample (features, input tensor, intermediate tensors, output)."""
    cells = spec.tile_side ** 2 if spec.layout == 'tiled' else n_bands * spec.patch_size ** 2
    sample = (n_bands + cells + 1) * FLOAT_BYTES + spec.bytes_per_sample
    return min(MAX_BATCH, max(MIN_BATCH, memory_mb * 2 ** 20 // RUNTIME_SHARE // runs // sample))


def thread_invariant(model_path):
    """True when every operator of the model is one that onnxruntime splits between threads by output
    element, so that its predictions do not depend on the thread count; False when unsure."""
    onnx = require('onnx')
    try:
        graph = onnx.load(str(model_path)).graph
    except Exception:  # protobuf's DecodeError and the like: open_session says what is wrong
        return False
    return all(node.op_type in THREAD_INVARIANT_OPS for node in graph.node)


class SessionPool:
    """onnxruntime sessions for `threads` threads. Models of THREAD_INVARIANT_OPS get one
    single-threaded session per thread, each run on its own thread and taking the batches of a block
    as they free up: one session with several intra-op threads makes every operator wait for all of
    them, so a core busy reading or writing a block stalls each operator, whereas these sessions
    never wait for each other (and a single-threaded run costs a few % less CPU). Other models (e.g.
    tree ensembles, which add their trees up in parallel parts) get one session with every thread."""

    def __init__(self, model_path, threads):
        # more sessions than cores only add copies of the model and threads that take turns
        threads = max(1, min(int(threads), os.cpu_count() or 1))
        count = threads if thread_invariant(model_path) else 1
        self.sessions = [open_session(model_path, threads // count) for _ in range(count)]
        self.idle = queue.SimpleQueue()
        for session in self.sessions:
            self.idle.put(session)
        self.pool = None

    def __enter__(self):
        self.pool = ThreadPoolExecutor(len(self.sessions), thread_name_prefix='rsgeochem-apply-ort')
        return self

    def __exit__(self, *exc_info):
        self.pool.shutdown(cancel_futures=True)
        return False

    def run(self, spec, tensor):
        session = self.idle.get()
        try:
            return predict(session, spec, tensor)
        finally:
            self.idle.put(session)

    def predict_into(self, spec, output, batches):
        """output[index] = predictions of each (index, tensor) of `batches`; besides the batch running
        on each session at most one waits, so memory stays about that of one run per session."""
        pending = collections.deque()
        for index, tensor in batches:
            pending.append((index, self.pool.submit(self.run, spec, tensor)))
            if len(pending) > len(self.sessions):
                done, future = pending.popleft()
                output[done] = future.result()
        for done, future in pending:
            output[done] = future.result()


def block_bytes_per_pixel(spec, n_bands):
    """Bytes per pixel of a block's arrays besides the model's batches: the read (values, nodata
    mask and GDAL's temporaries), validity and mask, the batch indices, the output and the writer's
    float64 copy, the range flags and their comparisons, and for patch models the padded copy of
    the block."""
    read = n_bands * (FLOAT_BYTES + 3) + FLOAT_BYTES
    patch = n_bands * FLOAT_BYTES + 2 if spec.layout == 'patch' else 0
    flags = 4 if spec.fitted_range is not None else 0
    return read + 4 + 8 + FLOAT_BYTES + 17 + patch + flags


def aligned_rows(rows, tile_rows):
    """The largest block height <= rows that is a multiple or a divisor of the output's tile height,
    so that blocks complete output tiles exactly (no tile is written twice)."""
    if rows >= tile_rows:
        return rows - rows % tile_rows
    while tile_rows % rows:
        rows -= 1
    return rows


class BlockIO:
    """Reading (bands, validity, mask) and writing of the blocks, run on one background thread so
    that GDAL's decoding and compression overlap with onnxruntime (both release the GIL). Each GDAL
    dataset is only ever used by that thread."""

    def __init__(self, spec, bands, reader, mask_reader, writer, windows, flag_writer=None):
        self.spec, self.bands, self.windows = spec, bands, windows
        self.reader, self.mask_reader, self.writer = reader, mask_reader, writer
        self.flag_writer = flag_writer

    def read(self, number):
        """(values (F, read rows, width) float32, valid (rows, width), flags (rows, width) uint8:
        OUTSIDE / INSIDE the fitted range or FLAG_NODATA, None without a fitted range)."""
        window = self.windows[number]
        block = self.reader.read(window, self.bands, np.float32)
        invalid = np.ma.getmaskarray(block).any(axis=0)
        if self.spec.layout == 'patch':
            valid = patch_valid(invalid, window, self.spec.halo)
        else:
            valid = ~invalid
        if self.mask_reader is not None:
            valid &= self.mask_reader.read(Window(window.row, window.rows), [1])[0].filled(0) != 0
        return block.data, valid, self.range_flags(window.core(block.data), valid)

    def range_flags(self, values, valid):
        if self.spec.fitted_range is None:
            return None
        low, high, _ = self.spec.fitted_range
        outside = ((values < low[:, None, None]) | (values > high[:, None, None])).any(axis=0)
        flags = np.where(outside, OUTSIDE, INSIDE).astype(np.uint8)
        flags[~valid] = FLAG_NODATA
        return flags

    def write(self, number, output, flags):
        window = self.windows[number]
        self.writer.write(window.row, output.reshape(window.rows, -1))  # flushes complete tiles
        if self.flag_writer is not None:
            self.flag_writer.write(window.row, flags)


def patch_note(spec):
    if spec.layout != 'patch':
        return ''
    return f', or no complete {spec.patch_size} x {spec.patch_size} neighbourhood'


def clip_below(output, minimum, result):
    """Set predictions below `minimum` to it (in place; nodata NaNs untouched), counting them."""
    below = output < minimum
    count = int(np.count_nonzero(below))
    if count:
        result.clipped += count
        result.lowest = min(result.lowest, float(output[below].min()))
        output[below] = minimum


def apply_model(input_path, model_path, output_path, bands=None, mask_path=None, threads=2,
                memory_mb=DEFAULT_MEMORY_MB, progress=None, cancel=None, require_predictions=True,
                flags_path=None, minimum=None):
    """Predict every pixel of `input_path` with the ONNX model and write a float32 GeoTIFF.

    Pixels where a used band (or, for patch models, any pixel of the k x k neighbourhood, the raster
    edge included) is nodata or non-finite, or where the mask is 0 or nodata, become nodata.
    Predictions below `minimum` (e.g. 0: a content cannot be negative) are set to it and counted.
    A quarter of `memory_mb` goes to the model's batches, the rest to two blocks of rows (the one
    predicted and the next one, read meanwhile). Predicted pixels whose band values lie outside the
    range the model was fitted on (see fitted_range) are counted, noted and, with `flags_path`,
    flagged in a byte raster (1 outside, 0 inside, 255 nodata). Returns an ApplyResult. Without a
    single predicted pixel (and `require_predictions`) nothing is written and InputError says why.
    """
    info = raster_info(input_path, INPUT)
    sessions = SessionPool(model_path, threads)
    spec = model_spec(sessions.sessions[0], model_path)
    check_not_digital_numbers(spec, info)
    bands, notes = select_bands(spec, info, bands)
    mask_reader = check_mask(mask_path, info.grid) if mask_path else None
    result = ApplyResult(bands, spec.layout, spec.target,
                         batch_size(spec, len(bands), memory_mb, len(sessions.sessions)), notes=notes)
    width = info.grid.width
    flags_path = flags_path if spec.fitted_range is not None else None
    with ExitStack() as stack:
        writer = stack.enter_context(RasterWriter(output_path, info.grid, 1, DEFAULT_NODATA, [spec.target]))
        flag_writer = stack.enter_context(RasterWriter(
            flags_path, info.grid, 1, FLAG_NODATA, [f'outside {spec.fitted_range[2]} (1)'],
            gdal.GDT_Byte)) if flags_path else None
        worker = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix='rsgeochem-apply-io'))
        stack.enter_context(sessions)
        rows = rows_per_block(width, 2 * block_bytes_per_pixel(spec, len(bands)),
                              memory_mb - memory_mb // RUNTIME_SHARE, spec.halo)
        windows = block_windows(info.grid.height, aligned_rows(rows, writer.dataset.GetRasterBand(1)
                                                               .GetBlockSize()[1]), spec.halo)
        io = BlockIO(spec, bands, RasterReader(input_path, INPUT), mask_reader, writer, windows, flag_writer)
        try:
            upcoming, written = worker.submit(io.read, 0), None
            for number in range(len(windows)):
                values, valid, flags = upcoming.result()
                check_cancel(cancel)
                if number + 1 < len(windows):
                    upcoming = worker.submit(io.read, number + 1)
                output = np.full(valid.size, np.nan, dtype=np.float32)
                batches = block_tensors(spec, values, valid, windows[number], result.batch)
                sessions.predict_into(spec, output, batches)
                if minimum is not None:
                    clip_below(output, minimum, result)
                count = int(np.count_nonzero(valid))
                result.predicted += count
                result.nodata += valid.size - count
                if flags is not None:
                    result.outside += int(np.count_nonzero(flags == OUTSIDE))
                del values, valid
                if written is not None:
                    written.result()
                written = worker.submit(io.write, number, output, flags)
                if progress is not None:
                    progress((number + 1) / len(windows))
            written.result()
            if require_predictions and result.predicted == 0:
                raise InputError('no pixel has a value in every used band (nodata everywhere'
                                 f'{", or masked" if mask_path else ""}{patch_note(spec)}); check the '
                                 'bands, their nodata value and the mask.', INPUT)
        finally:
            worker.shutdown(cancel_futures=True)
    result.blocks = len(windows)
    if result.outside:
        share = 100 * result.outside / result.predicted
        result.notes.append(
            f'{result.outside} of {result.predicted} predicted pixels ({share:.1f}%) have band values '
            f'outside {spec.fitted_range[2]} of the model: their predictions are extrapolations; check '
            'that the image has the corrections and units of the training data.')
    return result
