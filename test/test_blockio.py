"""Block-wise raster I/O: block-wise results equal whole-array results on awkward shapes."""
import numpy as np
import pytest
from osgeo import gdal

from rsgeochem.core.errors import CancelledError, InputError
from rsgeochem.core.raster import blockio

UTM32 = gdal.osr.SpatialReference()
UTM32.ImportFromEPSG(32632)


def make_grid(width, height):
    return blockio.Grid(width, height, (500000.0, 30.0, 0.0, 5600000.0, 0.0, -30.0), UTM32.ExportToWkt())


def write_test_raster(path, array, nodata=-9999.0):
    grid = make_grid(array.shape[-1], array.shape[-2])
    blockio.write_raster(path, grid, array, nodata=nodata, descriptions=[f'b{i}' for i in range(len(array))])
    return path


def box_sum_3x3(array):
    """Whole-array 3x3 sum with zero padding (a kernel that needs a one-row halo)."""
    padded = np.pad(array, 1)
    return sum(padded[i:i + array.shape[0], j:j + array.shape[1]] for i in range(3) for j in range(3))


@pytest.mark.parametrize('shape', [(1, 1), (1, 17), (17, 1), (23, 7), (64, 5)])
@pytest.mark.parametrize('block_rows', [1, 2, 5, 10, 1000])
def test_blocks_with_halo_reproduce_whole_array_kernel(tmp_path, shape, block_rows):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, *shape)).astype(np.float32)
    path = write_test_raster(tmp_path / 'in.tif', data)
    reader = blockio.RasterReader(path, 'INPUT')
    expected = np.stack([box_sum_3x3(band.astype(np.float64)) for band in data])
    result = np.full(expected.shape, np.nan)
    for window in blockio.block_windows(shape[0], block_rows, halo=1):
        block = reader.read(window).filled(0)
        padded = np.pad(block, ((0, 0), (1 - window.top, 1 - window.bottom), (1, 1)))
        summed = sum(padded[:, i:i + window.rows, j:j + shape[1]] for i in range(3) for j in range(3))
        result[:, window.row:window.row + window.rows] = summed
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize('memory_mb', [1, 256])
def test_read_blocks_and_writer_round_trip_with_nodata(tmp_path, memory_mb):
    rng = np.random.default_rng(2)
    data = rng.uniform(0, 1, size=(3, 301, 1200)).astype(np.float32)
    data[1, 5:9, 100:200] = -9999.0
    source = write_test_raster(tmp_path / 'in.tif', data)
    info = blockio.raster_info(source)
    windows = 0
    with blockio.RasterWriter(tmp_path / 'out.tif', info.grid, 3, descriptions=['x', 'y', 'z']) as writer:
        for window, block in blockio.read_blocks(source, memory_mb=memory_mb, parameter='INPUT'):
            windows += 1
            own_rows = data[1, window.row:window.row + window.rows]
            assert block.mask[1].sum() == np.count_nonzero(own_rows == -9999)
            writer.write(window.row, block * 2)
    assert (windows > 1) == (memory_mb == 1)
    out = gdal.Open(str(tmp_path / 'out.tif'))
    result = out.ReadAsArray()
    expected = np.where(data == -9999.0, -9999.0, data * 2)
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    assert out.GetRasterBand(2).GetDescription() == 'y'
    assert out.GetRasterBand(1).GetNoDataValue() == -9999.0
    assert out.GetGeoTransform() == info.grid.geotransform
    assert blockio.same_crs(out.GetProjection(), UTM32.ExportToWkt())
    structure = out.GetMetadata('IMAGE_STRUCTURE')
    assert structure.get('COMPRESSION') == 'ZSTD'
    assert out.GetRasterBand(1).GetBlockSize()[1] > 1  # tiled, not strips


@pytest.mark.parametrize('block_rows', [1, 7, 100, 300])
@pytest.mark.parametrize('flush_bytes', [blockio.FLUSH_BYTES, 1])
def test_tiles_are_written_once_whatever_the_block_rows(tmp_path, monkeypatch, block_rows, flush_bytes):
    """Blocks that do not line up with the tiles, and rows of tiles handed to GDAL in parts (one
    tile wide with flush_bytes 1), give the same file as GDAL's copy of the whole array in one go:
    GDAL would otherwise recompress (and append) a tile for every block that touches it."""
    monkeypatch.setattr(blockio, 'FLUSH_BYTES', flush_bytes)
    rng = np.random.default_rng(3)
    data = rng.uniform(0, 1, size=(2, 530, 700)).astype(np.float32)
    grid = make_grid(700, 530)
    memory = gdal.GetDriverByName('MEM').Create('', 700, 530, 2, gdal.GDT_Float32)
    memory.SetGeoTransform(grid.geotransform)
    memory.SetProjection(grid.crs_wkt)
    for index in range(2):
        memory.GetRasterBand(index + 1).SetNoDataValue(blockio.DEFAULT_NODATA)
        memory.GetRasterBand(index + 1).WriteArray(data[index])
    gdal.Translate(str(tmp_path / 'whole.tif'), memory,
                   creationOptions=blockio.gtiff_creation_options(gdal.GDT_Float32))
    with blockio.RasterWriter(tmp_path / 'blocks.tif', grid, 2) as writer:
        for window in blockio.block_windows(530, block_rows):
            writer.write(window.row, data[:, window.row:window.row + window.rows])
    np.testing.assert_array_equal(gdal.Open(str(tmp_path / 'blocks.tif')).ReadAsArray(), data)
    assert (tmp_path / 'blocks.tif').stat().st_size == (tmp_path / 'whole.tif').stat().st_size


@pytest.mark.parametrize('rows, tile_rows, expected', [(600, 256, 512), (256, 256, 256), (255, 256, 128),
                                                       (134, 256, 128), (90, 256, 64), (1, 256, 1),
                                                       (30, 100, 25), (7, 1, 7), (1000, 7919, 1000)])
def test_block_rows_line_up_with_rows_of_tiles(rows, tile_rows, expected):
    """Whole rows of tiles, else the largest even share of one (no block spans two rows of tiles),
    unless that share is under half the rows the budget allows (a prime tile height)."""
    assert blockio.tile_aligned(rows, tile_rows) == expected


def test_reader_holds_at_most_the_row_of_tiles_it_reads(tmp_path):
    """GDAL's cache holds no more than one row of the input's tiles while blocks are read, and none
    once a block ends a row of tiles."""
    data = np.random.default_rng(4).uniform(0, 1, size=(3, 700, 600)).astype(np.float32)
    source = write_test_raster(tmp_path / 'in.tif', data)
    gdal.Open(str(source)).FlushCache()
    before = gdal.GetCacheUsed()
    tile_row_bytes = 3 * 256 * 768 * 4  # three bands of three whole 256 x 256 tiles
    windows = 0
    for window, block in blockio.read_blocks(source, memory_mb=1, parameter='INPUT'):
        windows += 1
        assert window.row // 256 == (window.row + window.rows - 1) // 256
        used = gdal.GetCacheUsed() - before
        assert used < 1.1 * tile_row_bytes  # GDAL adds a few bytes per block; two rows would double it
        if (window.row + window.rows) % 256 == 0 or window.row + window.rows == 700:
            assert used == 0
        np.testing.assert_array_equal(block.data, data[:, window.row:window.row + window.rows])
    assert windows > 3


def test_writer_rows_out_of_order_still_land(tmp_path):
    data = np.arange(3 * 300 * 600, dtype=np.float32).reshape(3, 300, 600)
    grid = make_grid(600, 300)
    with blockio.RasterWriter(tmp_path / 'out.tif', grid, 3) as writer:
        for row in (200, 0, 100):
            writer.write(row, data[:, row:row + 100])
    np.testing.assert_array_equal(gdal.Open(str(tmp_path / 'out.tif')).ReadAsArray(), data)


def test_user_creation_options_override_the_defaults(tmp_path):
    grid = make_grid(40, 30)
    data = np.ones((30, 40), np.float32)
    with blockio.creation_options(['COMPRESS=DEFLATE', ' ZLEVEL=9', 'BLOCKXSIZE=16', 'BLOCKYSIZE=16', '']):
        blockio.write_raster(tmp_path / 'user.tif', grid, data)
    blockio.write_raster(tmp_path / 'default.tif', grid, data)
    user, default = gdal.Open(str(tmp_path / 'user.tif')), gdal.Open(str(tmp_path / 'default.tif'))
    assert user.GetMetadata('IMAGE_STRUCTURE')['COMPRESSION'] == 'DEFLATE'
    assert user.GetRasterBand(1).GetBlockSize() == [16, 16]
    assert not any(option.startswith('ZSTD_LEVEL')  # ours dropped with another COMPRESS
                   for option in blockio.merged_options(blockio.GTIFF_OPTIONS, ['COMPRESS=DEFLATE']))
    assert default.GetMetadata('IMAGE_STRUCTURE')['COMPRESSION'] == 'ZSTD'
    np.testing.assert_array_equal(user.ReadAsArray(), data)


def test_smooth_maps_keep_the_floating_point_predictor_unless_the_user_picks_a_compression(tmp_path):
    grid = blockio.Grid(64, 48, (0.0, 1.0, 0.0, 48.0, 0.0, -1.0), '')
    yy, xx = np.mgrid[0:48, 0:64]
    data = (np.sin(xx / 9.0) + np.cos(yy / 7.0)).astype(np.float32)[None]  # a smooth surface

    def written(name, **writer):
        with blockio.RasterWriter(tmp_path / name, grid, **writer) as out:
            out.write(0, data[0])
        dataset = gdal.Open(str(tmp_path / name))
        np.testing.assert_array_equal(dataset.ReadAsArray(), data[0])
        return dataset.GetMetadata('IMAGE_STRUCTURE'), (tmp_path / name).stat().st_size

    smooth, smooth_size = written('smooth.tif', smooth=True)
    plain, plain_size = written('plain.tif')
    assert smooth.get('PREDICTOR') == '3' and 'PREDICTOR' not in plain
    assert smooth_size < plain_size  # what the predictor is there for
    with blockio.creation_options(['COMPRESS=DEFLATE']):
        user, _ = written('user.tif', smooth=True)
    assert user['COMPRESSION'] == 'DEFLATE' and 'PREDICTOR' not in user


@pytest.mark.parametrize('size, out', [((53, 37), (7, 5)), ((333, 1000), (331, 17)), ((257, 513), (2, 512)),
                                       ((999, 1000), (998, 3)), ((40, 40), (40, 40))])
def test_decimated_read_equals_gdal_subsampling_of_the_whole_band(tmp_path, size, out):
    """Row by row with the cache released, the same pixels as GDAL's own nearest subsampling."""
    rows, cols = size
    path = str(tmp_path / 'in.tif')
    dataset = gdal.GetDriverByName('GTiff').Create(path, cols, rows, 1, gdal.GDT_Float32,
                                                   ['TILED=YES', 'BLOCKXSIZE=16', 'BLOCKYSIZE=16'])
    dataset.GetRasterBand(1).WriteArray(np.random.default_rng(2).random(size).astype(np.float32))
    dataset = None
    dataset = gdal.Open(path)
    band = dataset.GetRasterBand(1)
    expected = band.ReadAsArray(buf_xsize=out[1], buf_ysize=out[0])
    np.testing.assert_array_equal(blockio.decimated_read(band, out[1], out[0]), expected)


def test_reader_drops_the_tiles_of_a_tile_window_of_whole_tiles(tmp_path):
    """A tile of whole 256 x 256 tiles without a halo leaves nothing in GDAL's cache (no later tile
    reads them); one ending mid-tile keeps that tile for its neighbour."""
    data = np.random.default_rng(5).uniform(0, 1, size=(2, 600, 700)).astype(np.float32)
    reader = blockio.RasterReader(write_test_raster(tmp_path / 'in.tif', data), 'INPUT')
    before = gdal.GetCacheUsed()
    block = reader.read(blockio.Window(0, 256, col=256, cols=444), dtype=np.float32)  # to the right edge
    np.testing.assert_array_equal(block.data, data[:, :256, 256:])
    assert gdal.GetCacheUsed() == before
    reader.read(blockio.Window(256, 256, col=0, cols=300), dtype=np.float32)
    assert gdal.GetCacheUsed() > before


def test_block_rows_follow_memory_budget():
    assert blockio.rows_per_block(1000, 8, memory_mb=1) == 2 ** 20 // 8000
    assert blockio.rows_per_block(10 ** 9, 8, memory_mb=1) == 1  # at least one row
    windows = blockio.block_windows(10, 4, halo=2)
    assert [(w.row, w.rows, w.top, w.bottom) for w in windows] == [(0, 4, 0, 2), (4, 4, 2, 2), (8, 2, 2, 0)]


def test_failed_write_leaves_nothing(tmp_path):
    grid = make_grid(10, 10)
    target = tmp_path / 'out.tif'
    with pytest.raises(RuntimeError):
        with blockio.RasterWriter(target, grid) as writer:
            writer.write(0, np.ones((5, 10)))
            raise RuntimeError('boom')
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_before_next_block(tmp_path):
    source = write_test_raster(tmp_path / 'in.tif', np.ones((1, 50, 50), dtype=np.float32))
    seen = []
    with pytest.raises(CancelledError):
        for window, _ in blockio.read_blocks(source, memory_mb=1, extra_bytes_per_pixel=2 ** 20 // 500,
                                             cancel=lambda: len(seen) >= 2, parameter='INPUT'):
            seen.append(window)
    assert len(seen) == 2


def test_unreadable_raster_names_parameter(tmp_path):
    (tmp_path / 'bad.tif').write_text('not a raster')
    with pytest.raises(InputError, match='INPUT'):
        blockio.raster_info(tmp_path / 'bad.tif', parameter='INPUT')


def test_grid_pixel_centres_and_comparison():
    grid = make_grid(4, 3)
    xs, ys = grid.pixel_centres(1, 2)
    np.testing.assert_allclose(xs, 500000 + 30 * (np.arange(4) + 0.5))
    np.testing.assert_allclose(ys, 5600000 - 30 * (np.arange(1, 3) + 0.5))
    assert grid.same_as(make_grid(4, 3))
    assert not grid.same_as(make_grid(4, 4))
