"""Laplacian-pyramid fusion (core.fusion.pipeline.fuse) on a cluster: the regression is fitted once
here, on the pipeline's own bounded sample (row strips thinned to FusionSettings.sample_size
pixels, and up to CELL_SAMPLE coarse cells: a few hundred thousand values whatever the mosaic's
size; the local regression's cell means, though, are one pass over the image here) and
broadcast; the pass over every pixel (pyramid low frequencies with their halo rows, K-means
labels, the model) runs tile by tile. The tiles are full-width row strips of whole local
blocks (about tile size² pixels; the pyramid filters whole rows), so that the coarse-cell means
the residual pass needs are summed in the local order: each tile returns the cells' float64 sums
and counts of each of its local blocks (grid.cell_sums), added here in block order.
The residual pass (fused + cubic(coarse − cell means)) is per pixel and runs tile by tile too. The
output is the local run's, bit for bit.

It uses the pipeline's fit (`fit`, `residual_passes`), block reader and per-tile step (`_Blocks`,
`_fuse_window` around the pure `fuse_tile`, and its checks)."""
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fusion import pipeline
from ..fusion.grid import TEMPORARY_GTIFF, cell_factors, cell_sums, prepare_grids, warp_to_grid
from ..raster.blockio import RasterReader, RasterWriter, Window, block_windows, raster_info
from .runner import run_step, tile_path, tile_result
from .tiles import Tile, sub_grid, window_rasters

OUTPUT, OUTPUT_CLUSTERS = 'OUTPUT', 'OUTPUT_CLUSTERS'
KEYS = pipeline.KEYS


@dataclass(frozen=True)
class FusionTiles:
    """What every tile of the pixel pass needs: sent once to each worker."""
    image_path: str
    bands: tuple
    cubic_path: str
    mask_path: str | None
    cluster_bands: tuple
    grid: object                  # the image Grid
    coarse: object                # the coarse Grid (cell sums) or None when not aligned
    levels: int
    model: object                 # core.fusion.model.FusionModel
    mode: str
    description: str
    temporary: bool               # a first pass the residual pass reads: uncompressed tiles
    with_clusters: bool
    blocks: dict                  # tile's first row -> [(row, rows)] of the local blocks it joins


def fusion_task(tile, folder, p):
    """Fused (and cluster) values of a tile's own rows by the pipeline's per-block step, and the
    coarse-cell sums of each local block in it."""
    # a full-width strip: the block reader reads its rows (and halo) of the inputs themselves
    blocks = pipeline._Blocks(p.image_path, list(p.bands), p.cubic_path, p.mask_path, p.cluster_bands)
    fused, clusters, _ = pipeline._fuse_window(blocks, Window(tile.row, tile.rows, tile.top, tile.bottom),
                                               p.levels, p.model, p.mode)
    grid = sub_grid(p.grid, 0, tile.row, tile.cols, tile.rows)
    written = [(OUTPUT, fused, p.description)] + ([(OUTPUT_CLUSTERS, clusters, 'cluster')] if p.with_clusters
                                                  else [])
    files = {key: tile_path(folder, key, tile) for key, _, _ in written}
    for key, values, description in written:
        files[key].parent.mkdir(parents=True, exist_ok=True)
        with RasterWriter(files[key], grid, 1, descriptions=[description],
                          options=TEMPORARY_GTIFF if p.temporary and key == OUTPUT else None) as writer:
            writer.write(0, values)
    cells = []   # per local block of the tile, so they add up in the local order
    for row, rows in p.blocks.get(tile.row, []) if p.coarse is not None else []:
        first_row, first_col, sums, counts = cell_sums(fused[row - tile.row:row - tile.row + rows], row, 0,
                                                       cell_factors(p.coarse, p.grid), p.coarse)
        cells.append({'row': first_row, 'col': first_col, 'sums': sums.tolist(), 'counts': counts.tolist()})
    return tile_result(folder, files, cells=cells)


def residual_task(tile, folder, p):
    """fused + cubic(residual) of a tile (pipeline.residual_correction's per-pixel step)."""
    with window_rasters([p['source'], p['residual']], tile.read_window) as (source, residual):
        fused, correction = (RasterReader(path, None).read(Window(0, tile.rows), [1], np.float32)
                             .filled(np.nan)[0] for path in (source, residual))
    path = tile_path(folder, OUTPUT, tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with RasterWriter(path, sub_grid(p['grid'], tile.col, tile.row, tile.cols, tile.rows), 1,
                      descriptions=[p['description']]) as writer:
        writer.write(0, fused + np.nan_to_num(correction))
    return tile_result(folder, {OUTPUT: path})


def strips(grid, block_rows, halo, tile_size):
    """(tiles, {tile row: [(row, rows)] of its local blocks}): full-width strips of whole local
    rows of tiles (pipeline.apply_model's) of about tile_size² pixels, with `halo` rows."""
    per_tile = max(1, tile_size * tile_size // (grid.width * block_rows))   # local blocks per tile
    windows = block_windows(grid.height, block_rows)
    tiles, blocks = [], {}
    for start in range(0, len(windows), per_tile):
        group = windows[start:start + per_tile]
        row, rows = group[0].row, sum(window.rows for window in group)
        bottom = min(halo, grid.height - row - rows)
        tiles.append(Tile(0, row, grid.width, rows, 0, min(halo, row), 0, bottom))
        blocks[row] = [(window.row, window.rows) for window in group]
    return tiles, blocks


def model_description(model):
    """What identifies a fitted model in the manifest's fingerprint (arrays hashed)."""
    basis = model.basis
    return {'fits': [(fit.intercept, fit.coefficients) for fit in model.fits],
            'kmeans': None if model.kmeans is None else model.kmeans.cluster_centers_,
            'standardisation': [model.mean, model.scale],
            'basis': None if basis is None else [basis.mean, basis.scale, basis.knots],
            'local': None if model.local is None else vars(model.local)}


def fuse(run, geo_path, geo_band, image_path, bands, fused_path, clusters_path=None, mask_path=None,
         settings=None, log=print):
    """pipeline.fuse tile by tile (see the module docstring); returns (levels, model, warnings).
    The work files the workers read (the coarse grid's VRTs, the residual) go into
    "<fused path without suffix>.fusion" next to the output."""
    settings = settings or pipeline.FusionSettings()
    bands, names = pipeline._check_inputs(image_path, bands, mask_path, None, settings)
    work = Path(fused_path).with_name(f'{Path(fused_path).stem}.fusion')
    work.mkdir(parents=True, exist_ok=True)
    grids = prepare_grids(geo_path, geo_band, image_path, work, KEYS['geo'], KEYS['image'], log)
    warnings = []
    settings = pipeline._enough_cells(settings, grids, len(bands), warnings)
    iterations = pipeline.residual_passes(settings)
    if iterations > 1:
        raise InputError('a cluster run makes at most one residual pass; choose 0 or 1 iterations, or run '
                         'locally.', 'RESIDUAL_ITERATIONS')
    reader = pipeline._Blocks(image_path, bands, grids.cubic_path, mask_path, settings.cluster_bands)
    levels, model = pipeline.fit(reader, grids, settings, names, warnings, log, run.cancel)
    warnings += model.warnings
    aligned = cell_factors(grids.coarse, grids.image) is not None
    geo_name = raster_info(geo_path).descriptions[geo_band - 1] or 'geochemical grid'
    first_path = str(work / 'fused_0.vrt') if iterations else str(fused_path)
    # strips of the local path's rows of tiles, so that the cell sums add up in its order
    tiles, blocks = strips(grids.image, pipeline.TILE_ROWS, pipeline.tile_halo(model, settings.mode, levels),
                           run.tile_size)
    p = FusionTiles(str(image_path), tuple(bands), grids.cubic_path, str(mask_path) if mask_path else None,
                    tuple(settings.cluster_bands), grids.image, grids.coarse if aligned else None, levels,
                    model, settings.mode, f'{geo_name} fused ({settings.mode})', bool(iterations),
                    bool(clusters_path), blocks)
    outputs = {OUTPUT: (first_path, [p.description])}
    if clusters_path:
        outputs[OUTPUT_CLUSTERS] = (str(clusters_path), ['cluster'])
    inputs = [(KEYS['image'], image_path), (KEYS['geo'], geo_path)]
    inputs += [(KEYS['mask'], mask_path)] if mask_path else []
    description = {**asdict(settings), 'bands': bands, 'geo_band': geo_band, 'levels': levels,
                   'model': model_description(model), 'cubic': grids.cubic_path}
    results = run_step(run, fusion_task, grids.image, p, inputs, outputs, description, tiles=tiles)
    if iterations:
        residual = residual_grid(results, grids, work, aligned, first_path, settings.memory_mb, run.cancel)
        parameters = {'source': first_path, 'residual': residual, 'grid': grids.image,
                      'description': p.description}
        run_step(run, residual_task, grids.image, parameters, [(KEYS['geo'], geo_path), (OUTPUT, first_path)],
                 {OUTPUT: (str(fused_path), [p.description])}, {'first': description, 'residual': residual})
    if not run.keep_tiles and Path(fused_path).suffix.lower() != '.vrt':
        shutil.rmtree(work, ignore_errors=True)  # kept for a .vrt output: a run again reuses its tiles
    return levels, model, warnings


def residual_grid(results, grids, work, aligned, first_path, memory_mb, cancel=None):
    """The coarse residual coarse − cell means of the first pass (summed from the tiles in their
    order when the grids are aligned, else by GDAL's average warp, as locally), resampled onto the
    image grid by cubic convolution: a VRT."""
    average = str(work / 'fused_0_mean.tif')
    if aligned:
        sums = np.zeros((grids.coarse.height, grids.coarse.width))
        counts = np.zeros_like(sums)
        for part in (part for result in results for part in result['cells']):
            part_sums, part_counts = np.array(part['sums']), np.array(part['counts'])
            if part_sums.size:
                cells = (slice(part['row'], part['row'] + part_sums.shape[0]),
                         slice(part['col'], part['col'] + part_sums.shape[1]))
                sums[cells] += part_sums
                counts[cells] += part_counts
        with np.errstate(invalid='ignore', divide='ignore'):
            means = np.where(counts > 0, sums / counts, np.nan)
        with RasterWriter(average, grids.coarse, 1, options=TEMPORARY_GTIFF) as writer:
            writer.write(0, means.astype(np.float32))
    else:
        average = warp_to_grid(first_path, grids.coarse, work / 'average_0.vrt', 'average')
    return pipeline.coarse_residual(grids, average, work, 0, memory_mb, cancel)
