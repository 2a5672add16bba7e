"""Small synthetic inputs for tests: rasters (through core.blockio.write_raster) and point layers
(GeoPackage through QgsVectorFileWriter), always written under a caller's tmp folder.

Raster helpers work without QGIS; `write_points` needs the session QgsApplication (`qgis_app`).
"""
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr, osr

from rsgeochem.core.raster.blockio import Grid, write_raster

UTM32_EPSG = 32632


def crs_wkt(epsg=UTM32_EPSG):
    reference = osr.SpatialReference()
    reference.ImportFromEPSG(epsg)
    return reference.ExportToWkt()


def make_grid(width, height, origin=(500000.0, 5600000.0), pixel=30.0, epsg=UTM32_EPSG):
    """North-up grid whose top-left corner is `origin` (map units of EPSG:`epsg`)."""
    return Grid(width, height, (origin[0], pixel, 0.0, origin[1], 0.0, -pixel), crs_wkt(epsg))


def pixel_centre(grid, row, col):
    """Map (x, y) of the centre of pixel (row, col)."""
    x0, dx, _, y0, _, dy = grid.geotransform
    return x0 + dx * (col + 0.5), y0 + dy * (row + 0.5)


def write_test_raster(path, array, grid=None, nodata=-9999.0, descriptions=None):
    """Float32 GeoTIFF of `array` (bands, rows, cols) or (rows, cols); returns the path as str."""
    array = np.ma.asarray(array)
    grid = grid or make_grid(array.shape[-1], array.shape[-2])
    return write_raster(path, grid, array, nodata=nodata, descriptions=descriptions)


def write_points(path, xy, fields=None, epsg=UTM32_EPSG, layer_name='samples'):
    """GeoPackage point layer at `path` with one feature per (x, y); `fields` maps a name to a
    list of values (float, int, str or None for NULL; the type comes from the first non-None
    value). Needs the session QgsApplication. Returns the path as str."""
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransformContext,
        QgsFeature,
        QgsField,
        QgsFields,
        QgsGeometry,
        QgsPointXY,
        QgsVectorFileWriter,
        QgsWkbTypes,
    )

    from rsgeochem.algorithms.glue import compat

    fields = fields or {}
    kinds = {float: compat.FIELD_DOUBLE, int: compat.FIELD_LONG, str: compat.FIELD_STRING}
    qgs_fields = QgsFields()
    for name, values in fields.items():
        first = next((v for v in values if v is not None), 0.0)
        qgs_fields.append(QgsField(name, kinds[type(first)] if type(first) in kinds else compat.FIELD_DOUBLE))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = 'GPKG'
    options.layerName = layer_name
    writer = QgsVectorFileWriter.create(str(path), qgs_fields, QgsWkbTypes.Type.Point,
                                        QgsCoordinateReferenceSystem(f'EPSG:{epsg}'),
                                        QgsCoordinateTransformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        raise RuntimeError(f'cannot write {path}: {writer.errorMessage()}')
    for i, (x, y) in enumerate(xy):
        feature = QgsFeature(qgs_fields)
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(x), float(y))))
        feature.setAttributes([_plain(values[i]) for values in fields.values()])
        writer.addFeature(feature)
    del writer  # closes the file
    return str(path)


def _plain(value):
    """numpy scalars -> Python scalars (QVariant does not take numpy types)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class LoadedOutput:
    name: str     # the name the layer gets in the project
    layer: object  # the layer as loaded, after the algorithm's post-processor (style) ran


def run_as_in_the_toolbox(algorithm_id, parameters, layer_outputs, feedback=None):
    """processing.run with the `layer_outputs` keys loaded on completion, as the toolbox does:
    returns (results, {output key: LoadedOutput}). The post-processors run here, while the context
    that owns them is alive (it deletes them with itself). Needs the session QgsApplication."""
    import processing
    from qgis.core import (
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProcessingOutputLayerDefinition,
        QgsProcessingUtils,
        QgsProject,
    )
    project = QgsProject()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = feedback or QgsProcessingFeedback()
    parameters = dict(parameters)
    for key in layer_outputs:
        parameters[key] = QgsProcessingOutputLayerDefinition(str(parameters[key]), project)
    results = processing.run(f'rsgeochem:{algorithm_id}', parameters, context=context, feedback=feedback)
    to_load = context.layersToLoadOnCompletion()
    loaded = {}
    for key in layer_outputs:
        details = to_load[results[key]]
        layer = QgsProcessingUtils.mapLayerFromString(results[key], context)
        if layer is not None and context.temporaryLayerStore().mapLayer(layer.id()) is not None:
            layer = context.temporaryLayerStore().takeMapLayer(layer)  # outlive the context
        if details.postProcessor() is not None:
            details.postProcessor().postProcessLayer(layer, context, feedback)
        loaded[key] = LoadedOutput(details.name, layer)
    return results, loaded


def pykrige_with_error(x, y, z, model):
    """pykrige's OrdinaryKriging with the same variogram for h > 0 and γ(0) = the error variance:
    with exact_values=False pykrige evaluates the variogram function at zero distance for targets
    on a sample (its variance is that of a new measurement, error included)."""
    from pykrige.ok import OrdinaryKriging

    def variogram(_, distance):
        return np.where(distance > 0, model(np.maximum(distance, 1e-12)), model.error_variance)
    return OrdinaryKriging(x, y, z, variogram_model='custom', variogram_parameters=[],
                           variogram_function=variogram, exact_values=False)


def hyperspectral_truth(n=300, bands=200, seed=9):
    """Spectra mixed from 3 smooth endmembers over `bands` channels (abundances a, sum 1) plus
    noise; target y = 2 + 5 a1 - 3 a2² (a nonlinear function of the mixture)."""
    rng = np.random.default_rng(seed)
    wavelength = np.linspace(0.0, 1.0, bands)
    endmembers = np.stack([0.2 + 0.1 * np.sin(2 * np.pi * (k + 1) * wavelength + k) for k in range(3)])
    abundances = rng.dirichlet([1.0, 1.0, 1.0], n)
    spectra = abundances @ endmembers + rng.normal(0, 0.002, (n, bands))
    return spectra, 2 + 5 * abundances[:, 0] - 3 * abundances[:, 1] ** 2


class LogFeedback:
    """A QgsProcessingFeedback that keeps what the algorithm logs in `lines` (info, warnings and
    errors). Needs the session QgsApplication."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines = []

            def pushInfo(self, text):
                self.lines.append(text)

            def pushWarning(self, text):
                self.lines.append(text)

            def reportError(self, text, fatalError=False):
                self.lines.append(text)
        return Feedback()


def snapshot(*folders):
    """{path: sha256 of the file, or 'folder'} of everything under `folders`, hidden files
    included: equal snapshots before and after a run mean nothing was written or changed."""
    import hashlib
    from pathlib import Path
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob('*')):
            found[str(path)] = 'folder' if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def damaged_copy(source, path, keep=0.6):
    """A tiled, compressed copy of `source` cut after `keep` of its bytes: GDAL opens it (the
    header and tile index come first) but fails to read the tiles past the cut."""
    from osgeo import gdal
    whole = f'{path}.whole.tif'
    gdal.Translate(whole, str(source), creationOptions=['TILED=YES', 'BLOCKXSIZE=16', 'BLOCKYSIZE=16',
                                                        'COMPRESS=DEFLATE'])
    with open(whole, 'rb') as handle:
        data = handle.read()
    with open(path, 'wb') as handle:
        handle.write(data[:int(len(data) * keep)])
    gdal.Unlink(whole)
    return str(path)


def small_survey(folder, seed=16):
    """Small synthetic inputs in `folder`: a 4-band reflectance image (40 x 32 px of 30 m, bands
    described B1-B4), a coarse grid over it (10 x 8 cells of 120 m), 30 sample points inside with a
    field `cu`, and a damaged copy of the image. Returns {name: path as str}. Needs the session
    QgsApplication."""
    rng = np.random.default_rng(seed)
    grid = make_grid(40, 32)
    xy = [(grid.extent[0] + 30 * rng.uniform(1, 39), grid.extent[1] + 30 * rng.uniform(1, 31))
          for _ in range(30)]
    image = write_test_raster(folder / 'image.tif', rng.uniform(0.02, 0.4, (4, 32, 40)), grid,
                              descriptions=['B1', 'B2', 'B3', 'B4'])
    return {'image': image,
            'coarse': write_test_raster(folder / 'coarse.tif', rng.uniform(10, 50, (8, 10)),
                                        make_grid(10, 8, pixel=120.0)),
            'samples': write_points(folder / 'samples.gpkg', xy, {'cu': list(rng.uniform(5, 60, 30))}),
            'damaged': damaged_copy(image, folder / 'damaged.tif')}
def check_few_areas_inside(areas_path, raster_path, count, margin_pixels=2):
    """1-10 areas, each of at least 25 pixels, none within `margin_pixels` of the raster's edge."""
    dataset = gdal.Open(str(raster_path))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    inner = (x0 + margin_pixels * dx, x0 + (dataset.RasterXSize - margin_pixels) * dx,
             y0 + (dataset.RasterYSize - margin_pixels) * dy, y0 + margin_pixels * dy)
    vectors = ogr.Open(str(areas_path))
    features = list(vectors.GetLayer(0))
    assert 1 <= count == len(features) <= 10
    for feature in features:
        assert feature['pixels'] >= 25
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        assert xmin >= inner[0] - 1e-6 and xmax <= inner[1] + 1e-6
        assert ymin >= inner[2] - 1e-6 and ymax <= inner[3] + 1e-6
