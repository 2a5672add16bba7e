"""Block-wise raster I/O with GDAL: row blocks sized from a memory budget, optional halo,
nodata as masked values, and a float32 GeoTIFF writer that only publishes complete files.

Memory never grows with the raster size: readers hold one block (plus halo) at a time and the
writer streams blocks to disk.
"""
import contextvars
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array, osr

from ..errors import CancelledError, InputError
from .memory import release_freed_memory
from .scratch import partial_path, remove_stale_partials

gdal.UseExceptions()

DEFAULT_MEMORY_MB = 256
DEFAULT_NODATA = -9999.0
# ZSTD level 1 without a predictor: written at ~0.3 of DEFLATE's CPU time and read back at ~0.3;
# on reflectance (DN times a gain: few distinct values) smaller than DEFLATE and than ZSTD with the
# floating-point predictor, which costs twice the read time (bench/bench_compression.py). Users who
# keep files can ask for more (CREATION_OPTIONS).
GTIFF_OPTIONS = ('TILED=YES', 'COMPRESS=ZSTD', 'ZSTD_LEVEL=1', 'BIGTIFF=IF_SAFER', 'NUM_THREADS=2')
# Smooth maps (kriged surfaces): without the floating-point predictor ~2.7x larger (bench_compression:
# 28.7 vs 10.8 MB on a 3000² band) for ~0.1 CPU s per 9 Mpix saved; these are kept, so keep it.
SMOOTH_GTIFF_OPTIONS = (*GTIFF_OPTIONS, 'PREDICTOR=3')
# options that only make sense with our default compression: dropped when the user picks another
COMPRESSION_DETAILS = ('ZSTD_LEVEL', 'PREDICTOR')
# a row of tiles goes to GDAL in parts of about this size, each flushed before the next (RasterWriter)
FLUSH_BYTES = 16 * 2 ** 20
_user_options = contextvars.ContextVar('rsgeochem_creation_options', default=())


@contextmanager
def creation_options(options):
    """GeoTIFF creation options ('KEY=VALUE' strings, e.g. QGIS's "Creation options") that every
    RasterWriter with default options opened in this context applies on top of GTIFF_OPTIONS."""
    token = _user_options.set(tuple(option.strip() for option in options if option.strip()))
    try:
        yield
    finally:
        _user_options.reset(token)


def user_creation_options():
    """The options of the `creation_options` context this runs in (e.g. to hand to other processes)."""
    return _user_options.get()


def merged_options(defaults, extra):
    """`defaults` overridden key by key by `extra`; another COMPRESS drops our compression details."""
    def key(option):
        return option.split('=', 1)[0].strip().upper()
    extra_keys = {key(option) for option in extra}
    kept = [option for option in defaults if key(option) not in extra_keys
            and not ('COMPRESS' in extra_keys and key(option) in COMPRESSION_DETAILS)]
    return [*kept, *extra]


def gtiff_creation_options(data_type, options=None, smooth=False):
    """Creation options of a GeoTIFF of GDAL `data_type`: `options`, or (None) GTIFF_OPTIONS
    (SMOOTH_GTIFF_OPTIONS for a `smooth` map) with the user's (creation_options); the floating-point
    predictor only for floating-point data."""
    defaults = SMOOTH_GTIFF_OPTIONS if smooth else GTIFF_OPTIONS
    chosen = list(options) if options is not None else merged_options(defaults, _user_options.get())
    if data_type in (gdal.GDT_Float32, gdal.GDT_Float64):
        return chosen
    return [option for option in chosen if not option.upper().startswith('PREDICTOR=3')]


@dataclass(frozen=True)
class Grid:
    """Pixel grid of a raster: size, GDAL geotransform and CRS (WKT)."""
    width: int
    height: int
    geotransform: tuple
    crs_wkt: str

    @property
    def pixel_width(self):
        return abs(self.geotransform[1])

    @property
    def pixel_height(self):
        return abs(self.geotransform[5])

    @property
    def extent(self):
        """(xmin, ymin, xmax, ymax) of a north-up grid."""
        x0, dx, _, y0, _, dy = self.geotransform
        xs = (x0, x0 + dx * self.width)
        ys = (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def pixel_centres(self, row, rows):
        """Map coordinates (x of each column, y of each row) of pixel centres in rows row..row+rows."""
        x0, dx, _, y0, _, dy = self.geotransform
        xs = x0 + dx * (np.arange(self.width) + 0.5)
        ys = y0 + dy * (np.arange(row, row + rows) + 0.5)
        return xs, ys

    def to_pixel(self, x, y):
        """Fractional (column, row) of map coordinates in a north-up grid."""
        x0, dx, _, y0, _, dy = self.geotransform
        return (np.asarray(x) - x0) / dx, (np.asarray(y) - y0) / dy

    def same_as(self, other, tolerance=1e-6):
        """True when both grids have the same size, CRS and (within tolerance·pixel) geotransform."""
        if (self.width, self.height) != (other.width, other.height):
            return False
        scale = max(self.pixel_width, self.pixel_height)
        if not np.allclose(self.geotransform, other.geotransform, rtol=0, atol=tolerance * scale):
            return False
        return same_crs(self.crs_wkt, other.crs_wkt)


def same_crs(wkt_a, wkt_b):
    if not wkt_a or not wkt_b:
        return wkt_a == wkt_b
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(wkt_a)
    b.ImportFromWkt(wkt_b)
    return bool(a.IsSame(b))


@dataclass(frozen=True)
class RasterInfo:
    path: str
    grid: Grid
    band_count: int
    nodata: tuple      # per band, None where the band has none
    descriptions: tuple  # per band, '' where unset
    data_type: str     # GDAL type name of band 1


@dataclass(frozen=True)
class Window:
    """Rows row..row+rows are the block's own; `top`/`bottom` halo rows are read around them.
    A tile also has columns col..col+cols with `left`/`right` halo columns; `cols` None is the
    whole width."""
    row: int
    rows: int
    top: int = 0
    bottom: int = 0
    col: int = 0
    cols: int = None
    left: int = 0
    right: int = 0

    @property
    def read_row(self):
        return self.row - self.top

    @property
    def read_rows(self):
        return self.top + self.rows + self.bottom

    def core(self, array):
        """The block's own rows (and columns) of an array read with this window's halo (last two
        axes rows, cols)."""
        columns = slice(None) if self.cols is None else slice(self.left, self.left + self.cols)
        return array[..., self.top:self.top + self.rows, columns]

    def columns(self, width):
        """(first column read, columns read) in a raster `width` columns wide."""
        if self.cols is None:
            return 0, width
        return self.col - self.left, self.left + self.cols + self.right


def open_raster(path, parameter=None):
    try:
        dataset = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as error:
        raise InputError(f'cannot open raster "{path}" ({error}); choose a raster GDAL can read.',
                         parameter) from error
    if dataset is None or dataset.RasterCount == 0:
        raise InputError(f'"{path}" holds no raster bands; choose a raster layer.', parameter)
    return dataset


def raster_info(path, parameter=None):
    dataset = open_raster(path, parameter)
    bands = [dataset.GetRasterBand(i + 1) for i in range(dataset.RasterCount)]
    grid = Grid(dataset.RasterXSize, dataset.RasterYSize, tuple(dataset.GetGeoTransform()),
                dataset.GetProjection() or '')
    if not (grid.pixel_width > 0 and grid.pixel_height > 0):
        raise InputError(f'"{path}" has a pixel size of {grid.pixel_width:g} x {grid.pixel_height:g} map '
                         'units (a broken geotransform); assign its georeferencing (GDAL Translate -a_ullr '
                         'or Georeferencer) and run again.', parameter)
    return RasterInfo(
        path=str(path), grid=grid, band_count=dataset.RasterCount,
        nodata=tuple(band.GetNoDataValue() for band in bands),
        descriptions=tuple(band.GetDescription() or '' for band in bands),
        data_type=gdal.GetDataTypeName(bands[0].DataType))


def rows_per_block(width, bytes_per_pixel, memory_mb=DEFAULT_MEMORY_MB, halo=0):
    """Rows of a block whose read (halo included) and working arrays fit in `memory_mb`.

    `bytes_per_pixel` counts every array the caller keeps per pixel of a block (inputs, mask,
    intermediates, output). At least one row, whatever the budget.
    """
    budget = max(1, int(memory_mb)) * 2 ** 20
    return max(1, budget // max(1, width * bytes_per_pixel) - 2 * halo)


def tile_aligned(rows, tile_rows):
    """Block rows that line up with the file's rows of tiles: whole rows of tiles when there is room
    for one, else the largest share of one that divides it evenly (half, a third, ...), so that no
    block spans two rows of tiles. Each tile is then decoded once, and GDAL's cache holds at most the
    row of tiles being read (RasterReader drops it when the last block of it is read)."""
    if rows >= tile_rows:
        return rows - rows % tile_rows
    share = tile_rows // -(-tile_rows // rows)   # tile_rows split into the fewest parts of <= rows
    while tile_rows % share:
        share -= 1
    return share if 2 * share >= rows else rows  # a share much smaller than the budget costs speed


def block_windows(height, block_rows, halo=0):
    """Windows covering rows 0..height in blocks of `block_rows`, with halos clipped at the edges."""
    block_rows = max(1, int(block_rows))
    windows = []
    for row in range(0, height, block_rows):
        rows = min(block_rows, height - row)
        windows.append(Window(row, rows, min(halo, row), min(halo, height - row - rows)))
    return windows


def read_window(band, parameter, col, row, cols, rows, **options):
    """`band.ReadAsArray` of a window; a GDAL read failure (a truncated or damaged file) becomes an
    InputError naming the parameter the raster came from."""
    try:
        return band.ReadAsArray(col, row, cols, rows, **options)
    except RuntimeError as error:
        raise InputError(f'the file is damaged at rows {row + 1}-{row + rows} of band {band.GetBand()} '
                         f'(GDAL: {str(error).strip()}); copy or download it again, or choose another '
                         'raster.', parameter) from error


def decimated_read(band, width, height, parameter=None):
    """Band `band` (a gdal.Band) read at `width` x `height` pixels, exactly as GDAL's nearest
    subsampling of the whole band (`band.ReadAsArray(buf_xsize=width, buf_ysize=height)`) gives it,
    but one source row at a time with GDAL's cache released after each row of tiles: a whole-band
    read would first bring every tile of the raster into the cache (5 % of RAM by default)."""
    dataset = band.GetDataset()
    tile_rows = band.GetBlockSize()[1]
    # source row of each output row: GDAL's nearest rule (centre of the output row, a 1e-10 nudge)
    step = band.YSize / height
    rows = np.minimum(np.floor((np.arange(height) + 0.5) * step + 1e-10).astype(int), band.YSize - 1)
    values = None
    for index, row in enumerate(rows):
        line = read_window(band, parameter, 0, int(row), band.XSize, 1, buf_xsize=width, buf_ysize=1)
        if values is None:
            values = np.empty((height, width), dtype=line.dtype)
        values[index] = line[0]
        if index + 1 == len(rows) or rows[index + 1] // tile_rows != row // tile_rows:
            dataset.FlushCache()
    return values


def direct_read(gdal_type, dtype, nodata):
    """(True, value the nodata test compares with) when a band of `gdal_type` can be read by GDAL
    straight into an array of `dtype`, without a copy in the file's type; (False, None) otherwise.
    The test stays that of the file's values: the same type compares alike, and a float64 copy of
    float32 values meets nodata rounded to float32 (as numpy compares float32 values) exactly when
    the float32 values do. Other conversions (integers, float64 to float32) compare differently."""
    file_type = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(gdal_type) or np.float64)
    if file_type == dtype:
        return True, nodata
    if file_type == np.float32 and dtype == np.float64:
        with np.errstate(over='ignore'):
            return True, None if nodata is None else np.float32(nodata).item()
    return False, None


class RasterReader:
    """Reads windows of selected bands as masked arrays (nodata and non-finite values masked).
    `parameter` is the key of the Processing parameter the raster comes from (None for a temporary
    file of the run): errors name it."""

    def __init__(self, path, parameter):
        self.parameter = parameter
        self.path = path
        self.dataset = open_raster(path, parameter)
        self.info = raster_info(path, parameter)
        self.block_width, self.block_height = self.dataset.GetRasterBand(1).GetBlockSize()
        self.cached_block_row = 0

    def release_passed_blocks(self, window):
        """Drop GDAL's cached blocks once reading moves on to a later row of blocks: GDAL's cache
        (GDAL_CACHEMAX, 5 % of RAM by default) would otherwise fill with a big raster's blocks and
        hold memory well beyond the block budget. A VRT is reopened instead: FlushCache drops
        its own blocks but not those of the rasters it reads (e.g. a warp's whole source)."""
        block_row = window.read_row // self.block_height
        if block_row > self.cached_block_row:
            self.release_cache()
        self.cached_block_row = block_row

    def release_finished_blocks(self, window):
        """Drop GDAL's cached blocks right after a read that ends a row of blocks without a halo
        below and, for a tile (some columns), spans whole blocks without a halo at the sides: no
        later window in raster order reads those blocks again, and the caller's work on this one
        (and the writer's row of tiles) then runs without the input's tiles held beside it."""
        end = window.read_row + window.read_rows
        if window.bottom or not (end % self.block_height == 0 or end == self.info.grid.height):
            return
        if window.cols is not None:
            right = window.col + window.cols
            if window.left or window.right or window.col % self.block_width or \
                    (right % self.block_width and right != self.info.grid.width):
                return
            if right < self.info.grid.width and self.dataset.GetDriver().ShortName == 'VRT':
                # its own blocks only: reopening after every tile cost a warp 1/3 more CPU; the row's
                # last tile (or the next row's first read) reopens it
                self.dataset.FlushCache()
                return
        self.release_cache()
        self.cached_block_row = end // self.block_height

    def release_cache(self):
        if self.dataset.GetDriver().ShortName == 'VRT':
            self.dataset = None                  # closed first, so its sources close too
            self.dataset = open_raster(self.path, self.parameter)
        else:
            self.dataset.FlushCache()

    def read(self, window, bands=None, dtype=np.float64):
        """Masked array (bands, window.read_rows, columns read); `bands` are 1-based, default all."""
        self.release_passed_blocks(window)
        bands = bands or range(1, self.info.band_count + 1)
        col, cols = window.columns(self.info.grid.width)
        data = np.empty((len(bands), window.read_rows, cols), dtype=dtype)
        mask = np.zeros(data.shape, dtype=bool)
        for index, band_number in enumerate(bands):
            band = self.dataset.GetRasterBand(band_number)
            nodata = band.GetNoDataValue()
            direct, compared = direct_read(band.DataType, data.dtype, nodata)
            if not direct:
                values = read_window(band, self.parameter, col, window.read_row, cols, window.read_rows)
                if nodata is not None:
                    mask[index] = values == nodata
                data[index] = values
                continue
            read_window(band, self.parameter, col, window.read_row, cols, window.read_rows,
                        buf_obj=data[index])
            if nodata is not None:
                mask[index] = data[index] == compared
        self.release_finished_blocks(window)
        if np.issubdtype(dtype, np.floating):
            mask |= ~np.isfinite(data)
        return np.ma.MaskedArray(data, mask=mask)


def check_cancel(cancel):
    if cancel is not None and cancel():
        raise CancelledError('cancelled by the user')


def read_blocks(path, bands=None, memory_mb=DEFAULT_MEMORY_MB, halo=0, extra_bytes_per_pixel=0,
                dtype=np.float64, cancel=None, progress=None, *, parameter):
    """Yield (window, masked array) over a raster in row blocks sized from `memory_mb`.

    `extra_bytes_per_pixel` is what the caller allocates per pixel on top of the read, so the
    whole step fits the budget. `progress(fraction)` is called after each block is consumed;
    `cancel()` returning True stops with CancelledError before the next read; `parameter` is the key
    errors name (see RasterReader).
    """
    reader = RasterReader(path, parameter)
    count = len(bands) if bands else reader.info.band_count
    bytes_per_pixel = count * (np.dtype(dtype).itemsize + 1) + extra_bytes_per_pixel
    rows = rows_per_block(reader.info.grid.width, bytes_per_pixel, memory_mb, halo)
    if not halo:
        rows = tile_aligned(rows, reader.block_height)
    windows = block_windows(reader.info.grid.height, rows, halo)
    for index, window in enumerate(windows):
        check_cancel(cancel)
        yield window, reader.read(window, bands, dtype)
        if progress is not None:
            progress((index + 1) / len(windows))


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def raster_bytes(grid, band_count=1, data_type=gdal.GDT_Float32):
    """Uncompressed size of a raster on `grid`: what its file takes at most (compression of noisy
    values gains little)."""
    return grid.width * grid.height * band_count * gdal.GetDataTypeSize(data_type) // 8


def check_free_space(folder, needed, parameter):
    """InputError naming `parameter` when the file system of `folder` (or of its nearest existing
    parent) has less than `needed` bytes free."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InputError(f'the output needs up to {needed / 2 ** 30:.3g} GB and "{folder}" has '
                         f'{free / 2 ** 30:.3g} GB free; free disk space, write to another disk or '
                         'make the output smaller (larger pixels, smaller extent).', parameter)


class RasterWriter:
    """Float32 GeoTIFF (tiled, compressed) written block by block under a temporary name.

    Use as a context manager: the file appears at `path` only when the block exits without an
    exception; on error or cancel the partial file is deleted and `path` is left untouched.
    Blocks that end mid-row of tiles are collected into whole rows of the file's tiles (blocks of
    whole rows of tiles go straight to GDAL), each row written once and then flushed:
    a compressed tile written in parts would be recompressed (and the file grow) on every part
    once GDAL's cache evicts it, and GDAL's cache holds no row of tiles that is not on disk yet, so
    memory stays bounded and a cancelled run has little to drop. Partial files of the same output
    left by killed runs are removed on entry. `parameter` is the output's Processing key, named in
    errors; `options` None means GTIFF_OPTIONS (SMOOTH_GTIFF_OPTIONS if `smooth`) with the user's
    creation options (gtiff_creation_options).
    """

    def __init__(self, path, grid, band_count=1, nodata=DEFAULT_NODATA, descriptions=None,
                 data_type=gdal.GDT_Float32, options=None, parameter=None, smooth=False):
        self.path = Path(path)
        self.parameter = parameter
        if self.path.suffix.lower() not in ('.tif', '.tiff'):
            raise InputError(f'output "{path}" must be a GeoTIFF (.tif); choose a .tif file name.',
                             parameter)
        self.grid = grid
        self.band_count = band_count
        self.nodata = nodata
        self.descriptions = list(descriptions or [])
        self.data_type = data_type
        self.numpy_type = gdal_array.GDALTypeCodeToNumericTypeCode(data_type)
        self.options = gtiff_creation_options(data_type, options, smooth)
        self.temporary = partial_path(self.path)
        self.dataset = None
        self.tile_rows = 1
        self.flush_cols = 1      # columns (whole tiles) of the buffer written and flushed at a time
        self.buffer = None       # (bands, tile rows, width): the row of tiles being filled
        self.buffer_row = 0      # first raster row of the buffer
        self.buffered = 0        # rows of the buffer filled so far

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        check_free_space(self.path.parent, raster_bytes(self.grid, self.band_count, self.data_type),
                         self.parameter)
        driver = gdal.GetDriverByName('GTiff')
        try:
            self.dataset = driver.Create(str(self.temporary), self.grid.width, self.grid.height,
                                         self.band_count, self.data_type, self.options)
        except RuntimeError as error:
            remove_quietly(self.temporary)
            raise InputError(f'cannot create "{self.path}" ({error}); choose a folder you can write '
                             'to.', self.parameter) from error
        self.dataset.SetGeoTransform(self.grid.geotransform)
        if self.grid.crs_wkt:
            self.dataset.SetProjection(self.grid.crs_wkt)
        for index in range(self.band_count):
            band = self.dataset.GetRasterBand(index + 1)
            if self.nodata is not None:
                band.SetNoDataValue(self.nodata)
            if index < len(self.descriptions):
                band.SetDescription(str(self.descriptions[index]))
        tile_cols, self.tile_rows = self.dataset.GetRasterBand(1).GetBlockSize()
        part_pixels = FLUSH_BYTES // (self.band_count * self.tile_rows * np.dtype(self.numpy_type).itemsize)
        self.flush_cols = max(1, part_pixels // tile_cols) * tile_cols
        return self

    def write(self, row, array):
        """Write rows starting at `row`; `array` is (bands, rows, width) or (rows, width), masked
        values and non-finite values become nodata. Blocks come in row order; a block that does
        not continue the previous one is written as it is (correct, only slower)."""
        array = np.ma.asarray(array)
        if array.ndim == 2:
            array = array[np.newaxis]
        if array.shape[0] != self.band_count or array.shape[2] != self.grid.width:
            raise ValueError(f'block shape {array.shape} does not fit a {self.band_count}-band '
                             f'{self.grid.width}-column raster')
        row = int(row)
        if row != self.buffer_row + self.buffered:
            self._write_buffer()
            self.buffer_row = row
        done = 0
        while done < array.shape[1]:
            # the buffer ends where the row of tiles of its first row ends
            capacity = self.tile_rows - self.buffer_row % self.tile_rows
            rows = min(array.shape[1] - done, capacity - self.buffered)
            part = array[:, done:done + rows]
            done += rows
            if not self.buffered and rows == min(capacity, self.grid.height - self.buffer_row):
                self._write_rows(part)   # whole rows of tiles: straight to GDAL, no buffer copy
                continue
            self._fill(part)
            if self.buffered == capacity:
                self._write_buffer()

    def _convert(self, part, target):
        """Copy `part` (bands, rows, cols) into `target` of the file's type, band by band, masked
        and non-finite values as nodata."""
        fill = self.nodata if self.nodata is not None else np.nan
        for index in range(self.band_count):
            values = target[index]
            values[...] = np.ma.getdata(part[index])
            invalid = np.ma.getmaskarray(part[index])
            if np.issubdtype(self.numpy_type, np.floating):
                invalid = invalid | ~np.isfinite(values)
            values[invalid] = fill

    def _fill(self, part):
        """Copy rows of a block into the buffer (made on first use: blocks of whole rows of tiles
        never need it)."""
        if self.buffer is None:
            self.buffer = np.empty((self.band_count, self.tile_rows, self.grid.width), dtype=self.numpy_type)
        rows = part.shape[1]
        self._convert(part, self.buffer[:, self.buffered:self.buffered + rows])
        self.buffered += rows

    def _write_rows(self, part):
        """Write `part`, whole rows of tiles from the buffer's row, converted a few tiles at a time."""
        def converted(col, cols):
            target = np.empty((self.band_count, part.shape[1], cols), dtype=self.numpy_type)
            self._convert(part[:, :, col:col + cols], target)
            return target
        self._write_parts(converted)
        self.buffer_row += part.shape[1]

    def _write_buffer(self):
        if self.buffered:
            self._write_parts(lambda col, cols: self.buffer[:, :self.buffered, col:col + cols])
        self.buffer_row += self.buffered
        self.buffered = 0

    def _write_parts(self, part_at):
        """Write rows from the buffer's row a few tiles wide at a time (`part_at(col, cols)` gives
        them, bands first), each part flushed (compressed, on disk and out of GDAL's cache) before
        the next: GDAL's cache never holds a second copy of the whole row of tiles, and each tile is
        still written once, with all its bands."""
        for col in range(0, self.grid.width, self.flush_cols):
            part = part_at(col, min(self.flush_cols, self.grid.width - col))
            for index in range(self.band_count):
                try:
                    self.dataset.GetRasterBand(index + 1).WriteArray(part[index], col, self.buffer_row)
                except RuntimeError as error:
                    raise InputError(f'writing "{self.path}" failed ({error}); check the free disk '
                                     'space and that the folder is writable.', self.parameter) from error
            self.dataset.FlushCache()
        release_freed_memory()

    def __exit__(self, exc_type, exc, traceback):
        if self.dataset is not None and exc_type is None:
            try:
                self._write_buffer()
            except InputError as error:
                self.__exit__(InputError, error, None)  # drops the partial file
                raise
        dataset, self.dataset, self.buffer = self.dataset, None, None
        if dataset is not None:
            if exc_type is None:
                dataset.FlushCache()
            elif hasattr(dataset, 'DropCache'):  # GDAL >= 3.9: discard unwritten tiles, no flush
                dataset.DropCache()
            dataset = None  # noqa: F841 - releasing the handle closes the file
        if exc_type is None:
            os.replace(self.temporary, self.path)
        else:
            remove_quietly(self.temporary)
        return False


def write_raster(path, grid, array, nodata=DEFAULT_NODATA, descriptions=None):
    """Write a small in-memory array (bands, rows, cols) or (rows, cols) in one go."""
    array = np.ma.asarray(array)
    bands = 1 if array.ndim == 2 else array.shape[0]
    with RasterWriter(path, grid, bands, nodata, descriptions) as writer:
        writer.write(0, array)
    return str(path)
