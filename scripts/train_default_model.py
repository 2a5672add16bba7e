"""Train the default inversion model shipped as models/re2o3_cnn_gf2.onnx (`make default-model`).

The paper's chain (Cheng et al. 2023) on the sample data set (resources/sample, SIMULATED RE2O3,
GF-2-like 4-band image, see its PROVENANCE.md), with the plugin's own core code:
  1. ordinary Kriging of the topsoil samples (re2o3_pct, %): variogram model chosen by
     leave-one-out RMSE (core.kriging.choose_model), kriged onto the image grid (temporary file);
  2. surface-to-surface sample set (core.samples.surface_samples): kriged value at the sample's
     pixel <-> that pixel's surface reflectance (blue, green, red, NIR; unitless 0-1) of
     resources/sample/gf2like_surface_reflectance.tif (the simulated content is a pixel-scale
     function of the reflectance: a 3x3 mean would blur it);
  3. the paper's CNN (5000 iterations, Adam lr 0.001, dropout keep 0.7) on a spatial-block split
     (500 m blocks, 1/3 test), compared with MLR, PLSR and random forest on the same split.
The model expects surface reflectance (0-1) of GF-2 PMS bands 1-4 in that order, e.g. the output
of rsgeochem:darkobjectsubtraction, pixel by pixel as in training. Deterministic: the
same seed gives the same weights (only the training date in the metadata changes).

Run from the checkout root: .venv/bin/python scripts/train_default_model.py [--output PATH]
[--report PATH.html]
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
from checkout_package import CHECKOUT, plugin_package  # scripts/ is on sys.path (the script's folder)
from osgeo import ogr

SAMPLE = CHECKOUT / 'resources' / 'sample'
SAMPLES = SAMPLE / 'simulated_re2o3_samples.gpkg'
IMAGE = SAMPLE / 'gf2like_surface_reflectance.tif'
TARGET_FIELD = 're2o3_pct'
TARGET_UNITS = '% RE2O3'
DEFAULT_OUTPUT = CHECKOUT / 'models' / 're2o3_cnn_gf2.onnx'
BLOCK_SIZE = 500.0  # m; about 4x the 110 m sample spacing, beyond the 150 m smoothing of the field
SEED = 20230101
WINDOW = 1  # pixel: band values of the sample's own pixel (the simulated content is pixel-scale)


def read_samples(path, field):
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    rows = [(feature.GetGeometryRef().GetX(), feature.GetGeometryRef().GetY(), feature.GetField(field))
            for feature in layer]
    return (np.array(column, dtype=np.float64) for column in zip(*rows))


def surface_to_surface(x, y, z, work_dir):
    """Kriged content at each sample's pixel and the image's band values at that pixel (WINDOW)
    (rsgeochem:kriging then rsgeochem:surfacesamples, through their core functions)."""
    from rsgeochem.core.geostat import kriging, variogram
    from rsgeochem.core.geostat.kriging_grid import krige_grid
    from rsgeochem.core.geostat.surface_samples import band_field_names, surface_samples
    from rsgeochem.core.raster.blockio import raster_info
    samples = kriging.prepare_samples(x, y, z)
    model, _ = kriging.choose_model(samples, variogram.experimental_variogram(samples.x, samples.y,
                                                                              samples.z))
    print(f'variogram: {model}')
    kriged = str(Path(work_dir) / 'kriged.tif')
    krige_grid(samples, model, raster_info(IMAGE).grid, kriged)
    sample_set = surface_samples(str(IMAGE), kriged, x, y, window=WINDOW)
    print(f'{sample_set.x.size} of {x.size} samples usable; {sample_set.skipped_text() or "none skipped"}')
    return (sample_set.x, sample_set.y, sample_set.bands, sample_set.kriged,
            band_field_names(sample_set.descriptions))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default=str(DEFAULT_OUTPUT), help='the .onnx file to write')
    parser.add_argument('--report', help='also write the HTML training report here')
    arguments = parser.parse_args()
    with plugin_package():
        train(arguments)


def train(arguments):
    from rsgeochem.core.inversion import splits, training
    from rsgeochem.core.inversion.training_report import write_training_report

    with tempfile.TemporaryDirectory() as work_dir:
        x, y, features, target, names = surface_to_surface(*read_samples(SAMPLES, TARGET_FIELD),
                                                           work_dir)
    training.check_samples(features, target, names, TARGET_FIELD)
    split = splits.spatial_block_split(x, y, BLOCK_SIZE, 1 / 3, SEED).check(len(names) + 2, 'SPLIT')
    options = training.TrainingOptions(seed=SEED)
    results = training.train_models(features, target, split, training.MODEL_TYPES, options)
    print(f'{split.train.size} train / {split.test.size} test samples, {BLOCK_SIZE:g} m blocks')
    for result in results:
        print(f'{result.model_type:5s} train R2 {result.train.r2:.3f} RPD {result.train.rpd:.2f} | '
              f'test R2 {result.test.r2:.3f} RMSE {result.test.rmse:.3f} RPD {result.test.rpd:.2f}')
    cnn_result = next(result for result in results if result.model_type == 'cnn')
    proto = training.model_proto(cnn_result, names, TARGET_FIELD, TARGET_UNITS, split)
    print('wrote', training.save_onnx(proto, arguments.output))
    if arguments.report:
        data = {'x': x, 'y': y, 'target': target, 'feature_names': names,
                'target_field': TARGET_FIELD, 'target_units': TARGET_UNITS}
        notes = ['Default model of the plugin, trained by scripts/train_default_model.py on the '
                 'SIMULATED sample data set; the CNN is written whatever the comparison says.']
        print('wrote', write_training_report(arguments.report, 'Default RE2O3 model (sample data)',
                                             data, results, cnn_result, split, notes))


if __name__ == '__main__':
    main()
