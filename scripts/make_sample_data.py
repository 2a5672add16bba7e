"""Build the sample data set in resources/sample/ (deterministic, seeded; run from the checkout root):

    .venv/bin/python scripts/make_sample_data.py

Input: resources/sample/source/sen2_rstoolbox_12band_L2A.tif (real Sentinel-2 L2A, see
resources/sample/PROVENANCE.md). Outputs (all in resources/sample/, EPSG:32721, 10 m):

- gf2like_pms1_dn.tif + gf2like_pms1_dn.xml: a GF-2 PMS1-like 4-band DN image (blue, green, red,
  NIR = Sentinel-2 B2, B3, B4, B8) made by running surface reflectance forward through a simple
  atmosphere and the GF-2 PMS1 2016 calibration, with a GF-2-like scene XML (date, sun angles).
- gf2like_surface_reflectance.tif: the surface reflectance the DN were made from (reference).
- simulated_re2o3_samples.gpkg / simulated_re2o3_truth.tif: 374 SIMULATED topsoil RE2O3 samples
  with the statistics of Cheng et al. (2023) and the true field they were drawn from; the samples
  lie anywhere inside their pixel (not on its centre) and carry a measurement error.
- simulated_cu_survey_250m.gpkg / simulated_cu_grid_250m.tif / simulated_cu_truth.tif /
  simulated_cu_validation.gpkg: a SIMULATED coarse Cu survey for the fusion workflow, the fine
  true field and finer validation samples.
"""
from datetime import datetime
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr
from scipy import ndimage, special, stats

gdal.UseExceptions()
ogr.UseExceptions()

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'resources' / 'sample'
SOURCE = SAMPLE / 'source' / 'sen2_rstoolbox_12band_L2A.tif'
SEED = 20160820
EPSG = 32721          # WGS 84 / UTM zone 21S: the subset lies at 56.36 W (zone 21 spans 60-54 W)
PIXEL = 10.0          # m, the Sentinel-2 source resolution (no upsampling: it would add no detail)
S2_BANDS = (2, 3, 4, 8)           # band numbers in the 12-band source: B2, B3, B4, B8
BAND_NAMES = ('blue', 'green', 'red', 'nir')
# The source values carry the L2A BOA_ADD_OFFSET (+1000 DN = +0.1 reflectance, processing
# baseline >= 04.00): minimum 0.103, forest blue 0.124, water NIR 0.115. Removed here.
L2A_OFFSET = 0.1

# Scene: GF-2 PMS1, 2016-08-20 14:20:00 UTC (10:31 local solar time, GF-2's overpass).
SCENE_TIME = datetime(2016, 8, 20, 14, 20, 0)
# Sun position for the scene centre (1.469 S, 56.363 W) at SCENE_TIME from the NOAA general
# solar position equations (Spencer 1971 declination and equation of time), degrees.
SUN_ELEVATION = 63.944
SUN_AZIMUTH = 57.353
# GF-2 PMS1 multispectral absolute calibration for 2016 (CRESDA's yearly table, as tabulated in
# public code, e.g. GitHub desertstsung/Project_JiaoTang gainOffsetExtForMSPN.pro):
# L = GAIN * DN + OFFSET, L in W m-2 sr-1 um-1.
GAINS = (0.1322, 0.1550, 0.1477, 0.1613)
OFFSETS = (0.0, 0.0, 0.0, 0.0)
# GF-2 PMS1 band solar irradiance ESUN (W m-2 um-1): values commonly cited for PMS1, not checked
# against CRESDA; the sample only needs calibration to use the same numbers to invert exactly.
ESUN = (1944.98, 1854.42, 1542.87, 1080.97)
# Simple atmosphere (assumed, typical humid-tropics values): TOA reflectance =
# PATH + TRANSMITTANCE * surface reflectance (Lambertian, two-way total transmittance).
PATH_REFLECTANCE = (0.070, 0.045, 0.030, 0.015)
TRANSMITTANCE = (0.80, 0.85, 0.88, 0.92)

# RE2O3 topsoil statistics of Cheng et al. (2023), 374 samples, %.
RE_COUNT, RE_MIN, RE_MAX, RE_MEAN, RE_SD = 374, 0.16, 15.99, 3.47, 2.06
# variance shares of the simulated sample latent: spectral term (pixel scale), non-spectral field,
# nugget. The premise of the paper: the content is expressed in the surface spectra.
RE_SHARES = (0.75, 0.15, 0.10)
# share of the nugget that is measurement error (sampling + analysis, what field duplicates show);
# the rest is sub-pixel variation of the soil itself
RE_ERROR_SHARE = 0.5
# A second random stream places samples inside their pixels and splits the nugget, so that the
# values, pixels and true field stay those drawn from SEED alone (the shipped model was trained on them)
PLACEMENT_SEED = (SEED, 1)
EDGE = 0.02  # samples keep 2 % of a pixel from its edges: float rounding never moves them to a neighbour
# Cu: survey cell (m) and the weights of the regional field and of PC2 in log(Cu)
CU_CELL = 250.0
CU_REGIONAL, CU_PC2 = 0.25, 0.30
WATER_NIR = 0.08      # surface reflectance in NIR below which a pixel is water (no soil samples)


def earth_sun_distance(when):
    """Earth-Sun distance (AU); low-order series, e.g. Iqbal (1983) eq. 1.2.1 simplified."""
    day = when.timetuple().tm_yday
    return 1.0 - 0.01672 * np.cos(np.radians(0.9856 * (day - 4)))


def utm_bounds(dataset, srs):
    """Largest 10 m-aligned rectangle in `srs` inside the reprojected footprint of `dataset`."""
    source = osr.SpatialReference(wkt=dataset.GetProjection())
    source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, srs)
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    w, h = dataset.RasterXSize, dataset.RasterYSize
    corners = [transform.TransformPoint(x0 + i * dx, y0 + j * dy)[:2] for i, j in
               ((0, 0), (w, 0), (0, h), (w, h))]
    (ulx, uly), (urx, ury), (llx, lly), (lrx, lry) = corners
    xmin = np.ceil(max(ulx, llx) / PIXEL) * PIXEL + PIXEL
    xmax = np.floor(min(urx, lrx) / PIXEL) * PIXEL - PIXEL
    ymin = np.ceil(max(lly, lry) / PIXEL) * PIXEL + PIXEL
    ymax = np.floor(min(uly, ury) / PIXEL) * PIXEL - PIXEL
    return xmin, ymin, xmax, ymax


def surface_reflectance(srs):
    """Bands B2, B3, B4, B8 reprojected (bilinear) to UTM at 10 m, L2A offset removed."""
    dataset = gdal.Open(str(SOURCE))
    bounds = utm_bounds(dataset, srs)
    warped = gdal.Warp('', dataset, format='MEM', dstSRS=srs.ExportToWkt(), outputBounds=bounds,
                       xRes=PIXEL, yRes=PIXEL, resampleAlg='bilinear', srcNodata=np.nan,
                       dstNodata=np.nan)
    array = warped.ReadAsArray()[[b - 1 for b in S2_BANDS]].astype(np.float64) - L2A_OFFSET
    if not np.isfinite(array).all():
        raise RuntimeError('reprojected image has nodata pixels; shrink the bounds')
    return np.clip(array, 0.0, None), warped.GetGeoTransform()


def to_dn(reflectance):
    """Surface reflectance -> TOA reflectance -> radiance -> GF-2 PMS1 DN (UInt16)."""
    d = earth_sun_distance(SCENE_TIME)
    cos_zenith = np.cos(np.radians(90.0 - SUN_ELEVATION))
    dn = np.empty(reflectance.shape, dtype=np.uint16)
    for b in range(4):
        toa = PATH_REFLECTANCE[b] + TRANSMITTANCE[b] * reflectance[b]
        # TOA reflectance rho = pi L d^2 / (ESUN cos(theta_z))  (Chander et al. 2009, eq. 3)
        radiance = toa * ESUN[b] * cos_zenith / (np.pi * d ** 2)
        dn[b] = np.clip(np.rint((radiance - OFFSETS[b]) / GAINS[b]), 1, 65535)
    return dn


def standardise(values, mask=None):
    selected = values if mask is None else values[mask]
    return (values - selected.mean()) / selected.std()


def smooth_field(rng, shape, sigma):
    """Standardised Gaussian random field: white noise smoothed by a Gaussian of `sigma` pixels."""
    return standardise(ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode='reflect'))


def normal_scores(values, mask):
    """Van der Waerden normal scores of `values` ranked over `mask` (0 elsewhere)."""
    scores = np.zeros(values.shape)
    scores[mask] = special.ndtri(stats.rankdata(values[mask]) / (mask.sum() + 1))
    return scores


def spectral_component(reflectance, land):
    """Pixel-level spectral term: combination s of the bands' normal scores whose correlation with
    (blue, green, red, NIR) over land is proportional to (0, -1, -1, -1) (the pattern of Cheng et al.
    2023); solves C w = r with C the score correlation matrix. Normal scores make the pattern hold
    for Spearman's rho, the statistic of the paper, and make s a non-linear (per-band monotone)
    function of the reflectance. As blue, green and red are strongly correlated, s is mostly blue
    against red (a low red/blue, iron-oxide-like ratio) and dark green and NIR."""
    z = np.stack([normal_scores(band, land) for band in reflectance])
    correlation = np.corrcoef(z[:, land])
    weights = np.linalg.solve(correlation, np.array([0.0, -1.0, -1.0, -1.0]))
    return standardise(np.tensordot(weights, z, axes=1), land)


def exact_statistics(rng):
    """374 lognormal values forced to the paper's min, max, mean and SD (rounded to 0.01 %)."""
    cv2 = (RE_SD / RE_MEAN) ** 2
    sigma = np.sqrt(np.log1p(cv2))
    values = np.sort(rng.lognormal(np.log(RE_MEAN) - sigma ** 2 / 2, sigma, RE_COUNT))
    values[0], values[-1] = RE_MIN, RE_MAX
    inner = values[1:-1]
    n = RE_COUNT
    # affine map a + b*inner so the full set has mean RE_MEAN and (sample) SD RE_SD exactly
    target_sum = n * RE_MEAN - RE_MIN - RE_MAX
    target_sq = (n - 1) * RE_SD ** 2 + n * RE_MEAN ** 2 - RE_MIN ** 2 - RE_MAX ** 2
    m = len(inner)
    target_var = target_sq / m - (target_sum / m) ** 2
    scaled = (inner - inner.mean()) / inner.std() * np.sqrt(target_var) + target_sum / m
    values[1:-1] = np.round(scaled, 2)
    if values[1] <= RE_MIN or values[-2] >= RE_MAX:
        raise RuntimeError('forced statistics moved values outside [min, max]; change SEED')
    return values


def jittered_points(rng, land, count, spacing):
    """`count` land pixels picked from a jittered square grid of `spacing` m (soil sampling)."""
    rows, cols = land.shape
    step = spacing / PIXEL
    grid_r, grid_c = np.meshgrid(np.arange(step / 2, rows, step), np.arange(step / 2, cols, step),
                                 indexing='ij')
    r = np.clip(np.rint(grid_r + rng.uniform(-0.3, 0.3, grid_r.shape) * step), 0, rows - 1).astype(int)
    c = np.clip(np.rint(grid_c + rng.uniform(-0.3, 0.3, grid_c.shape) * step), 0, cols - 1).astype(int)
    keep = land[r, c]
    r, c = r[keep], c[keep]
    if len(r) < count:
        raise RuntimeError(f'only {len(r)} land points on a {spacing} m grid; reduce the spacing')
    chosen = np.sort(rng.choice(len(r), count, replace=False))
    r, c = r[chosen], c[chosen]
    return r, c


def inside_pixels(placement, rows, cols, geotransform):
    """Map coordinates of points placed uniformly at random inside pixels (rows, cols): a sample's
    GPS position falls anywhere in the image pixel, not on its centre."""
    x0, dx, _, y0, _, dy = geotransform
    u, v = (placement.uniform(EDGE, 1.0 - EDGE, len(rows)) for _ in range(2))
    return x0 + (cols + u) * dx, y0 + (rows + v) * dy


def re2o3(rng, placement, reflectance, land, geotransform):
    """Simulated RE2O3 (%). Sample latent = spectral term (RE_SHARES[0] of the variance, a function
    of each pixel's own reflectance) + non-spectral field (150 m smoothing) + nugget (measurement and
    sub-pixel variation); both mapped monotonically onto values with the paper's statistics. The
    truth is the same monotone map of the noise-free latent.

    The nugget draw n (variance N) is split into sub-pixel variation s and measurement error
    e = n - s, independent with variances (1 - RE_ERROR_SHARE) N and RE_ERROR_SHARE N: given n,
    e ~ N(RE_ERROR_SHARE n, RE_ERROR_SHARE (1 - RE_ERROR_SHARE) N). Returns also the error-free
    sample values (the same map of latent + s) to measure the error variance in % RE2O3."""
    spectral_share, field_share, nugget_share = RE_SHARES
    latent = (np.sqrt(spectral_share) * spectral_component(reflectance, land)
              + np.sqrt(field_share) * smooth_field(rng, land.shape, 15))
    # sites whose whole 3x3 window is land (no water or shore pixel in a window-mean sample)
    sites = ndimage.binary_erosion(land, np.ones((3, 3)), border_value=0)
    rows, cols = jittered_points(rng, sites, RE_COUNT, 110.0)
    xs, ys = inside_pixels(placement, rows, cols, geotransform)
    nugget = rng.normal(0.0, np.sqrt(nugget_share), RE_COUNT)
    sample_latent = latent[rows, cols] + nugget
    error = placement.normal(RE_ERROR_SHARE * nugget,
                             np.sqrt(RE_ERROR_SHARE * (1.0 - RE_ERROR_SHARE) * nugget_share))
    values = exact_statistics(rng)
    order = np.argsort(sample_latent)
    sample_values = np.empty(RE_COUNT)
    sample_values[order] = values
    # true field: the same monotone map applied to the noise-free latent, clamped at the ends
    truth = np.interp(latent, sample_latent[order], values)
    truth[~land] = np.nan
    error_free = np.interp(sample_latent - error, sample_latent[order], values)
    return xs, ys, sample_values, truth, rows, cols, error_free


def principal_component(reflectance, number):
    """Standardised principal component `number` (1-based) of the standardised bands, sign chosen
    so that its NIR loading is positive; returns (component, loadings, explained fraction)."""
    z = np.stack([standardise(band) for band in reflectance]).reshape(4, -1)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(z))
    order = np.argsort(eigenvalues)[::-1]
    vector = eigenvectors[:, order[number - 1]]
    vector = vector if vector[3] >= 0 else -vector
    component = standardise((vector @ z).reshape(reflectance.shape[1:]))
    return component, vector, eigenvalues[order[number - 1]] / eigenvalues.sum()


def block_means(field, cell):
    """Mean of `field` over square cells of `cell` pixels (edge cells partial)."""
    rows, cols = field.shape
    labels = (np.arange(rows)[:, None] // cell) * (-(-cols // cell)) + np.arange(cols)[None, :] // cell
    count = (-(-rows // cell)) * (-(-cols // cell))
    means = ndimage.mean(field, labels, np.arange(count))
    return np.asarray(means).reshape(-(-rows // cell), -(-cols // cell))


def write_tif(path, array, geotransform, wkt, data_type, descriptions, nodata=None):
    array = array if array.ndim == 3 else array[np.newaxis]
    options = ['COMPRESS=DEFLATE', 'TILED=YES', 'PREDICTOR=2' if data_type == gdal.GDT_UInt16 else
               'PREDICTOR=3']
    dataset = gdal.GetDriverByName('GTiff').Create(str(path), array.shape[2], array.shape[1],
                                                   array.shape[0], data_type, options)
    dataset.SetGeoTransform(geotransform)
    dataset.SetProjection(wkt)
    for index, description in enumerate(descriptions):
        band = dataset.GetRasterBand(index + 1)
        band.SetDescription(description)
        if nodata is not None:
            band.SetNoDataValue(nodata)
            band.WriteArray(np.where(np.isfinite(array[index]), array[index], nodata))
        else:
            band.WriteArray(array[index])
    dataset = None  # noqa: F841 - closes the file


def write_points(path, layer_name, srs, xs, ys, fields):
    """GeoPackage point layer; `fields` is a list of (name, ogr type, values)."""
    if path.exists():
        path.unlink()
    dataset = ogr.GetDriverByName('GPKG').CreateDataSource(str(path))
    layer = dataset.CreateLayer(layer_name, srs, ogr.wkbPoint)
    for name, kind, _ in fields:
        layer.CreateField(ogr.FieldDefn(name, kind))
    definition = layer.GetLayerDefn()
    layer.StartTransaction()
    for i, (x, y) in enumerate(zip(xs, ys)):
        feature = ogr.Feature(definition)
        for name, kind, values in fields:
            value = values[i]
            feature.SetField(name, float(value) if kind == ogr.OFTReal else value)
        point = ogr.Geometry(ogr.wkbPoint)
        point.AddPoint_2D(float(x), float(y))
        feature.SetGeometry(point)
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    dataset = None  # noqa: F841 - closes the file


def scene_xml(width, height, geotransform):
    """GF-2-like scene metadata, tag names as in CRESDA GF-2 PMS L1A XML (ProductMetaData)."""
    x0, dx, _, y0, _, dy = geotransform
    stamp = SCENE_TIME.strftime('%Y-%m-%d %H:%M:%S')
    tags = [
        ('SatelliteID', 'GF2'), ('SensorID', 'PMS1'), ('ProductLevel', 'LEVEL1A'),
        ('ProductID', 'SIMULATED-FROM-SENTINEL2'), ('Bands', '1,2,3,4'),
        ('StartTime', stamp), ('CenterTime', stamp), ('EndTime', stamp),
        ('SolarAzimuth', f'{SUN_AZIMUTH:.3f}'), ('SolarZenith', f'{90.0 - SUN_ELEVATION:.3f}'),
        ('SolarElevation', f'{SUN_ELEVATION:.3f}'),
        ('SatelliteAzimuth', '0.0'), ('SatelliteZenith', '0.0'),
        ('WidthInPixels', str(width)), ('HeightInPixels', str(height)), ('ImageGSD', f'{PIXEL:g}'),
        ('MapProjection', 'UTM'), ('EarthEllipsoid', 'WGS84'), ('ZoneNo', '21'),
        ('TopLeftMapX', f'{x0:.1f}'), ('TopLeftMapY', f'{y0:.1f}'),
        ('BottomRightMapX', f'{x0 + width * dx:.1f}'), ('BottomRightMapY', f'{y0 + height * dy:.1f}'),
        ('AbsCalibrationGain', ','.join(f'{g:g}' for g in GAINS)),
        ('AbsCalibrationOffset', ','.join(f'{o:g}' for o in OFFSETS)),
    ]
    body = '\n'.join(f'  <{tag}>{value}</{tag}>' for tag, value in tags)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!-- SIMULATED GF-2 PMS1-like scene built from Sentinel-2 by scripts/make_sample_data.py;'
            ' see PROVENANCE.md -->\n'
            f'<ProductMetaData>\n{body}\n</ProductMetaData>\n')


def cu_fields(rng, placement, reflectance, geotransform):
    """Simulated Cu (ppm): 40 exp(CU_REGIONAL R + CU_PC2 PC2) with R a 600 m-smoothed regional field
    and PC2 the image's second principal component (pixel scale); coarse survey = cell means over
    CU_CELL m cells x 5 % lognormal noise; 150 fine validation samples (truth x 5 % noise)."""
    pc2, loadings, explained = principal_component(reflectance, 2)
    regional = smooth_field(rng, pc2.shape, 60)
    truth = 40.0 * np.exp(CU_REGIONAL * regional + CU_PC2 * pc2)
    cell = int(round(CU_CELL / PIXEL))
    means = block_means(truth, cell)
    coarse = means * rng.lognormal(0.0, 0.05, means.shape)
    x0, dx, _, y0, _, dy = geotransform
    rows, cols = np.indices(coarse.shape)
    height, width = truth.shape
    # point at the centre of the part of each cell inside the image
    centre_c = (cols * cell + np.minimum((cols + 1) * cell, width)) / 2
    centre_r = (rows * cell + np.minimum((rows + 1) * cell, height)) / 2
    coarse_points = (x0 + centre_c * dx, y0 + centre_r * dy, coarse)
    pick = rng.choice(truth.size, 150, replace=False)
    r, c = np.unravel_index(np.sort(pick), truth.shape)
    validation = (*inside_pixels(placement, r, c, geotransform), truth[r, c] * rng.lognormal(0.0, 0.05, 150))
    return truth, coarse, coarse_points, validation, loadings, explained


def main():
    rng = np.random.default_rng(SEED)
    placement = np.random.default_rng(PLACEMENT_SEED)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    wkt = srs.ExportToWkt()
    reflectance, geotransform = surface_reflectance(srs)
    height, width = reflectance.shape[1:]
    land = reflectance[3] >= WATER_NIR

    write_tif(SAMPLE / 'gf2like_pms1_dn.tif', to_dn(reflectance), geotransform, wkt, gdal.GDT_UInt16,
              [f'B{i + 1} {name} (DN)' for i, name in enumerate(BAND_NAMES)])
    (SAMPLE / 'gf2like_pms1_dn.xml').write_text(scene_xml(width, height, geotransform), encoding='utf-8')
    write_tif(SAMPLE / 'gf2like_surface_reflectance.tif', reflectance.astype(np.float32), geotransform,
              wkt, gdal.GDT_Float32, [f'{name} surface reflectance' for name in BAND_NAMES])

    xs, ys, values, truth, rows, cols, error_free = re2o3(rng, placement, reflectance, land, geotransform)
    write_tif(SAMPLE / 'simulated_re2o3_truth.tif', truth.astype(np.float32), geotransform, wkt,
              gdal.GDT_Float32, ['simulated true RE2O3 (%)'], nodata=-9999.0)
    write_points(SAMPLE / 'simulated_re2o3_samples.gpkg', 'simulated_re2o3_samples', srs, xs, ys, [
        ('sample_id', ogr.OFTString, [f'RE{i + 1:03d}' for i in range(RE_COUNT)]),
        ('re2o3_pct', ogr.OFTReal, values),
        ('true_re2o3_pct', ogr.OFTReal, truth[rows, cols]),
        ('source', ogr.OFTString, ['simulated (scripts/make_sample_data.py)'] * RE_COUNT)])

    cu_truth, coarse, coarse_points, validation, loadings, explained = cu_fields(
        rng, placement, reflectance, geotransform)
    write_tif(SAMPLE / 'simulated_cu_truth.tif', cu_truth.astype(np.float32), geotransform, wkt,
              gdal.GDT_Float32, ['simulated true Cu (ppm)'], nodata=-9999.0)
    x0, _, _, y0, _, _ = geotransform
    cell = f'{CU_CELL:g}m'
    write_tif(SAMPLE / f'simulated_cu_grid_{cell}.tif', coarse.astype(np.float32),
              (x0, CU_CELL, 0.0, y0, 0.0, -CU_CELL), wkt, gdal.GDT_Float32,
              [f'simulated Cu (ppm), {CU_CELL:g} m survey grid'], nodata=-9999.0)
    for name, (px, py, pv), prefix in ((f'simulated_cu_survey_{cell}', coarse_points, 'CU'),
                                       ('simulated_cu_validation', validation, 'CV')):
        px, py, pv = (np.ravel(a) for a in (px, py, pv))
        write_points(SAMPLE / f'{name}.gpkg', name, srs, px, py, [
            ('sample_id', ogr.OFTString, [f'{prefix}{i + 1:03d}' for i in range(len(px))]),
            ('cu_ppm', ogr.OFTReal, pv),
            ('source', ogr.OFTString, ['simulated (scripts/make_sample_data.py)'] * len(px))])

    error = values - error_free
    print(f'image {width} x {height} px, land {land.mean():.1%}; RE2O3 min {values.min():.2f} '
          f'max {values.max():.2f} mean {values.mean():.3f} SD {values.std(ddof=1):.3f}; measurement '
          f'error variance {np.mean(error ** 2):.4f} %² (mean {np.mean(error):+.3f})')
    print(f'PC2 loadings {np.round(loadings, 3)}, explained {explained:.1%}; Cu grid {coarse.shape}')
    for b, name in enumerate(BAND_NAMES):
        pixel = stats.spearmanr(values, reflectance[b][rows, cols])[0]
        window = stats.spearmanr(values, ndimage.uniform_filter(reflectance[b], 3)[rows, cols])[0]
        print(f'Spearman RE2O3 samples vs {name}: pixel {pixel:+.3f}, 3x3 mean {window:+.3f}')


if __name__ == '__main__':
    main()
