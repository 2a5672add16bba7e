"""Every layer output of every algorithm loads as the toolbox loads it, through the processing
context's post-processors: with a human name and, for rasters, a style (checked by renderer type).
EXPECTED must list every layer destination of every algorithm, so a new output without a name and
a style fails here. The workflows' outputs are checked in test_workflows.py."""
import pytest

from factories import run_as_in_the_toolbox
from paths import CHECKOUT

SAMPLE = CHECKOUT / 'resources' / 'sample'
REFLECTANCE = str(SAMPLE / 'gf2like_surface_reflectance.tif')

# (algorithm, output) -> (layer name, renderer type; None for tables and points, which keep QGIS's
# own symbol)
EXPECTED = {
    ('radiometriccalibration', 'OUTPUT'): ('TOA reflectance (GF-2 PMS1 multispectral)', 'multibandcolor'),
    ('darkobjectsubtraction', 'OUTPUT'): ('Surface reflectance (DOS1)', 'multibandcolor'),
    ('darkobjectsubtraction', 'OUTPUT_TABLE'): ('Dark objects (DOS1)', None),
    ('spectralindices', 'OUTPUT'): ('Spectral indices (NDVI, NDWI)', 'singlebandpseudocolor'),
    ('surfacemask', 'OUTPUT'): ('Surface mask (water, vegetation masked)', 'paletted'),
    ('principalcomponents', 'OUTPUT'): ('Principal components (PC1-PC4)', 'multibandcolor'),
    ('principalcomponents', 'OUTPUT_TABLE'): ('PCA loadings and explained variance', None),
    ('kriging', 'OUTPUT'): ('Kriged cu_ppm', 'singlebandpseudocolor'),
    ('kriging', 'OUTPUT_VARIANCE'): ('Kriging variance of cu_ppm', 'singlebandpseudocolor'),
    ('kriging', 'OUTPUT_CV'): ('Kriging cross-validation of cu_ppm (leave-one-out)', None),
    ('surfacesamples', 'OUTPUT'): ('Surface-to-surface samples (re2o3_pct)', None),
    ('correlation', 'OUTPUT'): ('Correlation with kriged', None),
    ('applyinversionmodel', 'OUTPUT'): ('RE2O3 predicted (%) - DEMO model, simulated data',
                                        'singlebandpseudocolor'),
    ('applyinversionmodel', 'OUTPUT_OUT_OF_RANGE'): ('Pixels outside the training range', 'paletted'),
    ('accuracyassessment', 'OUTPUT'): ('Residuals of predicted re2o3_pct', None),
    # named after the grid layer, here the file this test names after the kriging output
    ('laplacianfusion', 'OUTPUT'): ('kriging_output fused with the image', 'singlebandpseudocolor'),
    ('laplacianfusion', 'OUTPUT_CLUSTERS'): ('Fusion clusters (K-means of the image)', 'paletted'),
    ('laplacianfusion', 'OUTPUT_TABLE'): ('Fusion regression coefficients', None),
    ('anomalies', 'OUTPUT'): (None, 'singleSymbol'),
    ('comparemaps', 'OUTPUT'): ('Difference applyinversionmodel_output - simulated_re2o3_truth (% RE2O3)',
                                'singlebandpseudocolor'),
}


def layer_destinations(algorithm):
    """Keys of the outputs that load as layers (rasters and feature sinks; not files such as reports)."""
    return [d.name() for d in algorithm.destinationParameterDefinitions()
            if d.type() in ('rasterDestination', 'sink', 'vectorDestination')]


def test_every_layer_output_is_listed(qgis_app):
    from qgis.core import QgsApplication, QgsProcessingModelAlgorithm
    provider = QgsApplication.processingRegistry().providerById('rsgeochem')
    algorithms = [a for a in provider.algorithms() if not isinstance(a, QgsProcessingModelAlgorithm)]
    outputs = {(a.name(), key) for a in algorithms for key in layer_destinations(a)}
    assert outputs == set(EXPECTED)


@pytest.fixture(scope='module')
def loaded(qgis_app, tmp_path_factory):
    """Every algorithm with layer outputs, run on the sample data with every layer output loaded."""
    folder = tmp_path_factory.mktemp('outputs')
    everything = {}

    def run(algorithm_id, parameters):
        """Run with every destination written into `folder` and the layer outputs loaded."""
        from qgis.core import QgsApplication
        algorithm = QgsApplication.processingRegistry().algorithmById(f'rsgeochem:{algorithm_id}')
        for definition in algorithm.destinationParameterDefinitions():
            parameters.setdefault(definition.name(), str(
                folder / f'{algorithm_id}_{definition.name().lower()}.{definition.defaultFileExtension()}'))
        keys = layer_destinations(algorithm)
        results, layers = run_as_in_the_toolbox(algorithm_id, parameters, keys)
        everything.update({(algorithm_id, key): layers[key] for key in keys})
        return results

    toa = run('radiometriccalibration', {
        'INPUT': str(SAMPLE / 'gf2like_pms1_dn.tif'), 'SENSOR': 0,
        'METADATA': str(SAMPLE / 'gf2like_pms1_dn.xml'),
        'GAINS': '0.1322,0.155,0.1477,0.1613', 'ESUN': '1944.98,1854.42,1542.87,1080.97'})['OUTPUT']
    run('darkobjectsubtraction', {'INPUT': toa, 'METHOD': 0})
    run('spectralindices', {'INPUT': REFLECTANCE, 'SENSOR': 3, 'INDICES': 'gf2_ndvi,gf2_ndwi'})
    run('surfacemask', {'INPUT': REFLECTANCE})
    run('principalcomponents', {'INPUT': REFLECTANCE})
    grid = run('kriging', {'INPUT': str(SAMPLE / 'simulated_cu_survey_250m.gpkg'), 'FIELD': 'cu_ppm',
                           'PIXEL_SIZE': 250.0, 'MARGIN': 250.0})['OUTPUT']
    points = str(SAMPLE / 'simulated_re2o3_samples.gpkg')
    samples = run('surfacesamples', {'INPUT': REFLECTANCE, 'SAMPLES': points, 'FIELD': 're2o3_pct',
                                     'KRIGED': str(SAMPLE / 'simulated_re2o3_truth.tif')})
    run('correlation', {'INPUT': samples['OUTPUT'], 'TARGET': 'kriged'})
    predicted = run('applyinversionmodel', {'INPUT': REFLECTANCE})['OUTPUT']
    run('accuracyassessment', {'INPUT': predicted, 'POINTS': points, 'FIELD': 're2o3_pct'})
    run('laplacianfusion', {'INPUT_GEOCHEM': grid, 'INPUT_IMAGE': REFLECTANCE, 'CLUSTERS': 2})
    run('anomalies', {'INPUT': predicted})
    run('comparemaps', {'INPUT': predicted, 'REFERENCE': str(SAMPLE / 'simulated_re2o3_truth.tif'),
                        'UNITS': '% RE2O3'})
    return everything


@pytest.mark.parametrize('algorithm_id, key', sorted(EXPECTED))
def test_output_loads_named_and_styled(loaded, algorithm_id, key):
    name, renderer = EXPECTED[(algorithm_id, key)]
    output = loaded[(algorithm_id, key)]
    assert output.layer is not None and output.layer.isValid()
    assert output.layer.name() == output.name
    if name is None:
        assert output.name.startswith('High-anomaly areas (95th percentile')
    else:
        assert output.name == name
    if renderer is not None:
        assert output.layer.renderer().type() == renderer
