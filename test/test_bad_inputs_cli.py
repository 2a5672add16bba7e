"""Bad inputs through qgis_process, where the cause shows at that level (its own parameter parsing
and checks, exit codes, signals; the other causes are in test_bad_inputs.py): each refused run
exits 1, names the parameter, prints no traceback and leaves every file as it was (inputs hashed,
output folders listed, hidden partial files included)."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from osgeo import gdal

from factories import small_survey, snapshot
from paths import QGIS_PROCESS


@pytest.fixture(scope='module')
def inputs(qgis_app, tmp_path_factory):
    folder = tmp_path_factory.mktemp('inputs')
    (folder / 'text.tif').write_text('not a raster')
    return {'folder': folder, 'text_tif': str(folder / 'text.tif'), **small_survey(folder)}


@pytest.fixture
def refused(qgis_process, inputs, tmp_path):
    """run(algorithm, key, *arguments): qgis_process must exit 1 naming `key`, without a traceback,
    and leave the inputs and tmp_path as they were. Returns the output."""
    def run(algorithm, key, *arguments):
        before = snapshot(inputs['folder'], tmp_path)
        result = qgis_process('run', f'rsgeochem:{algorithm}', '--', *arguments, check=False)
        text = result.stdout + result.stderr
        assert result.returncode == 1, text
        assert f'{key}: ' in text and 'Traceback' not in text, text
        assert snapshot(inputs['folder'], tmp_path) == before
        return text
    return run


def test_damaged_raster_names_the_parameter(refused, inputs, tmp_path):
    text = refused('darkobjectsubtraction', 'INPUT', f'INPUT={inputs["damaged"]}', f'OUTPUT={tmp_path}/d.tif')
    assert 'INPUT: the file is damaged at rows' in text


def test_output_that_is_a_folder(refused, inputs, tmp_path):
    (tmp_path / 'out.tif').mkdir()
    text = refused('darkobjectsubtraction', 'OUTPUT', f'INPUT={inputs["image"]}',
                   f'OUTPUT={tmp_path}/out.tif')
    assert 'is a folder' in text


def test_workflow_checks_every_output_before_its_first_step(refused, inputs, tmp_path):
    outputs = {'kriging:kriged_grid': 'k.tif', 'kriging:kriging_report': 'k.html',
               'principalcomponents:components': 'pc.tif', 'principalcomponents:pca_report': 'pca.html',
               'laplacianfusion:fused_map': 'fused.jpg', 'laplacianfusion:fusion_report': 'f.html',
               'anomalies:anomaly_areas': 'a.gpkg', 'anomalies:anomaly_report': 'a.html'}
    text = refused('geochemfusion', 'laplacianfusion:fused_map', f'IMAGE={inputs["image"]}',
                   f'SAMPLES={inputs["samples"]}', 'FIELD=cu', 'CELL_SIZE=120',
                   *(f'{key}={tmp_path / name}' for key, name in outputs.items()))
    assert 'does not end in .tif' in text


def test_custom_ratios_from_qgis_process(qgis_process, inputs, tmp_path):
    """qgis_process turns the cells 4 and 3 of CUSTOM_RATIOS=r,4,3 into 4.0 and 3.0."""
    qgis_process('run', 'rsgeochem:spectralindices', '--', f'INPUT={inputs["image"]}', 'SENSOR=4',
                 'CUSTOM_RATIOS=r,4,3', f'OUTPUT={tmp_path}/ratio.tif')
    image = gdal.Open(inputs['image']).ReadAsArray().astype(np.float64)
    ratio = gdal.Open(str(tmp_path / 'ratio.tif')).ReadAsArray()
    np.testing.assert_allclose(ratio, image[3] / image[2], rtol=1e-6)


@pytest.mark.parametrize('key, value, reason', [
    ('THREADS', '0', 'THREADS: 0 is not accepted. Range: 1 to 256.'),
    ('INPUT', 'text_tif', 'is not a raster GDAL can read')])
def test_refusals_of_qgis_say_why(qgis_process, inputs, tmp_path, key, value, reason):
    """QGIS's own check said only "Incorrect parameter value for KEY" or "not found"."""
    arguments = {'INPUT': inputs['image'], 'OUTPUT': f'{tmp_path}/p.tif'}
    arguments[key] = inputs.get(value, value)
    before = snapshot(inputs['folder'], tmp_path)
    result = qgis_process('run', 'rsgeochem:applyinversionmodel', '--',
                          *(f'{k}={v}' for k, v in arguments.items()), check=False)
    assert result.returncode == 1 and reason in result.stdout + result.stderr
    assert snapshot(inputs['folder'], tmp_path) == before


def test_sigterm_cancels_and_cleans_up(qgis_process, inputs, tmp_path):
    """A killed qgis_process (SIGTERM) used to leave its .partial.tif files."""
    process = subprocess.Popen([QGIS_PROCESS, 'run', 'rsgeochem:kriging', '--', f'INPUT={inputs["samples"]}',
                                'FIELD=cu', 'PIXEL_SIZE=0.25', 'NEIGHBOURHOOD_BLOCK=1',
                                f'OUTPUT={tmp_path}/k.tif'], env=qgis_process.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(name.endswith('.partial.tif') for name in os.listdir(tmp_path)):
            assert process.poll() is None and time.monotonic() < deadline, 'kriging never started writing'
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1 and 'Cancelled: no output was written.' in output, output
    assert os.listdir(tmp_path) == []
