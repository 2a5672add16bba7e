"""Core tests of the inversion models (no QGIS): tiling, CNN gradients and learning, baselines,
ONNX round trips and metadata, splits, input checks."""
import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from factories import hyperspectral_truth
from rsgeochem.core.errors import CancelledError, InputError
from rsgeochem.core.inversion import baselines, cnn, splits, training
from rsgeochem.core.inversion.onnx_metadata import KEYS, read_metadata, write_metadata
from rsgeochem.core.inversion.tiling import tile_features, tile_side

FAST = training.TrainingOptions(cnn=cnn.CnnConfig(iterations=1000))


def linear_truth(n=240, noise=0.05, seed=5):
    """Reflectance-like features and y = 1 + 8 b2 - 4 b3 + 2 b4 + N(0, noise)."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0.02, 0.4, size=(n, 4))
    target = 1 + 8 * features[:, 1] - 4 * features[:, 2] + 2 * features[:, 3]
    return features, target + rng.normal(0, noise, n)


def nonlinear_truth(n=240, seed=5):
    """y = 1 + 30 (b2 - 0.2)^2 + 3 b4 + N(0, 0.05): a parabola no linear model can follow."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0.02, 0.4, size=(n, 4))
    target = 1 + 30 * (features[:, 1] - 0.2) ** 2 + 3 * features[:, 3]
    return features, target + rng.normal(0, 0.05, n)


def test_tiling_copies_four_bands_four_times_and_cycles_others():
    tiles = tile_features(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]))
    assert tiles.shape == (2, 1, 4, 4) and tiles.dtype == np.float32
    assert_allclose(tiles[1, 0], np.tile([5, 6, 7, 8], (4, 1)))
    cyclic = tile_features(np.array([[1.0, 2.0, 3.0]]))[0, 0].ravel()
    assert_allclose(cyclic, [1, 2, 3] * 5 + [1])
    assert_allclose(tile_features(np.arange(16.0)[None])[0, 0].ravel(), np.arange(16.0))


@pytest.mark.parametrize('count, side', [(1, 4), (12, 4), (16, 4), (17, 8), (64, 8), (65, 12), (200, 16),
                                         (256, 16), (257, 20)])
def test_tiling_takes_any_band_count_in_the_smallest_square_of_side_a_multiple_of_4(count, side):
    features = np.arange(count, dtype=np.float64)[None] + 1
    tile = tile_features(features)[0, 0]
    assert tile.shape == (side, side)
    assert_allclose(tile.ravel(), np.resize(features[0], side * side))  # cyclic, row-major
    assert side - 4 < np.ceil(np.sqrt(count)) <= side


def numeric_gradient(params, tiles, target, mask, key, index, step=1e-6):
    original = params[key][index]
    params[key][index] = original + step
    upper, _ = cnn.loss_and_gradients(params, tiles, target, mask)
    params[key][index] = original - step
    lower, _ = cnn.loss_and_gradients(params, tiles, target, mask)
    params[key][index] = original
    return (upper - lower) / (2 * step)


@pytest.mark.parametrize('tiled, features', [(False, 4), (True, 4), (True, 20)])
def test_gradients_match_central_differences(tiled, features):
    """Every parameter's analytic gradient against a central difference, with a fixed dropout mask;
    the tiled case has the exact ties that tiling makes in the pooling windows; 20 features make an
    8x8 tile whose pooled 2x2 map feeds the fully connected layer."""
    config = cnn.CnnConfig(filters1=3, filters2=4, hidden=5)
    rng = np.random.default_rng(1)
    side = 8 if features > 16 else 4
    params = {key: value + rng.normal(0, 0.1, value.shape)
              for key, value in cnn.init_params(config, rng, side).items()}
    n = 7
    tiles = (tile_features(rng.normal(size=(n, features))).astype(np.float64) if tiled
             else rng.normal(size=(n, 1, 4, 4)))
    target = rng.normal(size=n)
    mask = (rng.random((n, config.hidden)) < 0.7) / 0.7
    _, grads = cnn.loss_and_gradients(params, tiles, target, mask)
    for key, value in params.items():
        for index in np.ndindex(value.shape):
            expected = numeric_gradient(params, tiles, target, mask, key, index)
            assert grads[key][index] == pytest.approx(expected, rel=1e-5, abs=1e-8), (key, index)


def fit_and_score(model_type, features, target, split, options=FAST):
    return training.train_models(features, target, split, (model_type,), options)[0]


def test_cnn_on_linear_truth_beats_constant_and_nears_mlr():
    features, target = linear_truth()
    split = splits.random_split(target.size, 1 / 3, 0)
    cnn_result = fit_and_score('cnn', features, target, split)
    mlr_result = fit_and_score('mlr', features, target, split)
    assert mlr_result.test.r2 > 0.99  # noise SD 0.05 against a signal SD of about 1
    assert cnn_result.test.r2 > 0.9  # a constant predictor scores <= 0
    assert cnn_result.test.r2 > mlr_result.test.r2 - 0.05
    assert np.all(np.diff(cnn_result.model.losses[::100][[0, -1]]) < 0)


def test_cnn_and_forest_follow_a_nonlinear_truth_that_mlr_misses():
    features, target = nonlinear_truth()
    split = splits.random_split(target.size, 1 / 3, 0)
    scores = {kind: fit_and_score(kind, features, target, split).test.r2 for kind in ('cnn', 'rf', 'mlr')}
    assert scores['mlr'] < 0.6
    assert scores['cnn'] > scores['mlr'] + 0.25
    assert scores['rf'] > scores['mlr'] + 0.25


def test_mlr_recovers_exact_coefficients_and_full_pls_equals_ols():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(30, 3)) * [1, 100, 0.01]
    target = 3 + 2 * features[:, 0] - 0.05 * features[:, 1] + 40 * features[:, 2]
    mlr = baselines.fit_mlr(features, target)
    probes = np.vstack([np.zeros(3), np.eye(3)])
    predicted = mlr.predict(probes)
    assert_allclose([predicted[0], *(predicted[1:] - predicted[0])], [3, 2, -0.05, 40], rtol=1e-9)
    noisy = target + rng.normal(0, 0.5, target.size)
    assert_allclose(baselines.fit_plsr(features, noisy, components=3).predict(features),
                    baselines.fit_mlr(features, noisy).predict(features), rtol=1e-8)


def test_pls_component_choice_by_cross_validation_finds_one_latent_direction():
    rng = np.random.default_rng(3)
    latent = rng.normal(size=120)
    features = latent[:, None] + rng.normal(0, 0.05, size=(120, 6))  # six copies of one signal
    target = 2 * latent + rng.normal(0, 0.1, 120)
    assert baselines.pls_components_by_cv(features, target, seed=0) <= 2


def onnx_predict(proto, inputs):
    import onnxruntime
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


@pytest.mark.parametrize('model_type', training.MODEL_TYPES)
def test_onnx_round_trip_matches_numpy_forward(model_type):
    features, target = nonlinear_truth(n=90)
    features = features * [1000, 1000, 1000, 1000]  # DN-like raw values: scaling is in the graph
    split = splits.random_split(target.size, 1 / 3, 0)
    options = training.TrainingOptions(cnn=cnn.CnnConfig(iterations=200), rf_trees=20)
    result = fit_and_score(model_type, features, target, split, options)
    proto = result.model.to_onnx()
    raw = features.astype(np.float32)
    inputs = tile_features(raw) if model_type == 'cnn' else raw
    output = onnx_predict(proto, inputs)
    assert output.shape == (target.size, 1)
    assert_allclose(output[:, 0], result.model.predict(raw), rtol=1e-5, atol=1e-5 * target.std())
    opsets = {entry.domain: entry.version for entry in proto.opset_import}
    assert opsets[''] <= cnn.ONNX_OPSET


def random_cnn(features, config=None, seed=0):
    """A CNN with random He weights and biases (units active on both sides of zero) standardising
    DN-like raw values (means 300-3000, SDs a tenth of them)."""
    config = config or cnn.CnnConfig()
    rng = np.random.default_rng(seed)
    params = cnn.init_params(config, rng, tile_side(features))
    for key in ('b1', 'b2', 'b3'):
        params[key] = rng.normal(0, 0.3, params[key].shape)
    mean = rng.uniform(300, 3000, features)
    return cnn.CnnModel(config, params, mean, mean / 10, 1.5, 0.4), rng


@pytest.mark.parametrize('features, config', [
    (1, cnn.CnnConfig()), (3, cnn.CnnConfig()), (4, cnn.CnnConfig()), (4, cnn.CnnConfig(5, 7, 9)),
    (13, cnn.CnnConfig()), (16, cnn.CnnConfig(3, 6, 4)), (20, cnn.CnnConfig())])
def test_exported_graph_equals_numpy_forward_for_any_band_count(features, config):
    """The ONNX export (the matrix graph of the 4x4 tile up to 16 features, convolutions for larger
    tiles) against the numpy forward, float32 rounding apart; random weights and widths other than
    the defaults catch a misplaced tap, filter or window cell."""
    model, rng = random_cnn(features, config, seed=features)
    raw = (model.x_mean + model.x_scale * rng.normal(size=(3000, features))).astype(np.float32)
    expected = model.predict(raw)
    output = onnx_predict(model.to_onnx(), tile_features(raw))
    assert output.shape == (raw.shape[0], 1)
    assert_allclose(output[:, 0], expected, rtol=0, atol=2e-5 * expected.std())


def test_cnn_graph_predictions_do_not_depend_on_the_thread_count(tmp_path):
    """Apply gives the CNN one single-threaded session per thread only because its operators split
    work by output element: 1 and 3 intra-op threads must agree bit for bit."""
    from rsgeochem.core.inversion.inference import open_session, thread_invariant
    model, rng = random_cnn(4)
    path = tmp_path / 'cnn.onnx'
    path.write_bytes(model.to_onnx().SerializeToString())
    assert thread_invariant(path)
    tiles = tile_features(model.x_mean + model.x_scale * rng.normal(size=(5000, 4)))
    one, three = (open_session(path, threads).run(None, {'input': tiles})[0] for threads in (1, 3))
    np.testing.assert_array_equal(one, three)


def test_metadata_carries_the_contract_keys(tmp_path):
    features, target = linear_truth(n=60)
    split = splits.random_split(target.size, 1 / 3, 4)
    result = fit_and_score('cnn', features, target, split,
                           training.TrainingOptions(cnn=cnn.CnnConfig(iterations=50)))
    names = ['b1', 'b2', 'b3', 'b4']
    path = training.save_onnx(training.model_proto(result, names, 're2o3_pct', '%', split),
                              tmp_path / 'model.onnx')
    metadata = read_metadata(path)
    assert set(metadata) == set(KEYS)
    assert metadata['features'] == names
    assert metadata['input_layout'] == 'tiled' and metadata['model_type'] == 'cnn'
    assert metadata['patch_size'] == 1
    assert metadata['target_field'] == 're2o3_pct' and metadata['target_units'] == '%'
    assert_allclose(metadata['normalisation']['mean'], features[split.train].mean(axis=0))
    assert_allclose(metadata['normalisation']['scale'], features[split.train].std(axis=0))
    assert_allclose(metadata['feature_range']['min'], features[split.train].min(axis=0))
    assert_allclose(metadata['feature_range']['max'], features[split.train].max(axis=0))
    assert metadata['split'] == dict(split.description, refit_on_all_samples=False)
    assert metadata['metrics']['test']['rmse'] == pytest.approx(result.test.rmse)
    assert metadata['metrics']['train']['n'] == split.train.size
    assert 'conv2x2' in metadata['architecture'] and 'T' in metadata['training_date']
    assert not list(tmp_path.glob('*.part'))


def test_metadata_json_is_strict_and_other_props_survive():
    import onnx
    model = onnx.helper.make_model(onnx.helper.make_graph([], 'empty', [], []))
    model.metadata_props.add(key='author', value='someone')
    write_metadata(model, {'rsgeochem.metrics': {'train': {'rpd': float('inf'), 'r2': float('nan')}},
                           'model_type': 'mlr'})
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props['author'] == 'someone'
    assert json.loads(props['rsgeochem.metrics']) == {'train': {'rpd': None, 'r2': None}}
    with pytest.raises(ValueError, match='unknown'):
        write_metadata(model, {'feature': ['b1']})


def test_read_metadata_of_a_non_onnx_file_names_the_parameter(tmp_path):
    path = tmp_path / 'broken.onnx'
    path.write_bytes(b'not a model')
    with pytest.raises(InputError, match='^MODEL: .*not a readable ONNX model'):
        read_metadata(path, 'MODEL')


def test_random_split_is_two_to_one_and_reproducible():
    split = splits.random_split(300, 1 / 3, 7)
    assert split.test.size == 100 and split.train.size == 200
    assert not set(split.train) & set(split.test)
    assert_allclose(splits.random_split(300, 1 / 3, 7).test, split.test)


def test_spatial_split_keeps_every_block_on_one_side():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1000, 400), rng.uniform(-400, 600, 400)
    split = splits.spatial_block_split(x, y, 200.0, 1 / 3, 3)
    # block of each sample computed here independently: column and row of 200 m squares
    block = [(int(a // 200), int(b // 200)) for a, b in zip(x, y)]
    train_blocks = {block[i] for i in split.train}
    test_blocks = {block[i] for i in split.test}
    assert not train_blocks & test_blocks
    assert len(train_blocks | test_blocks) == 25
    assert split.train.size + split.test.size == 400
    assert 400 / 3 <= split.test.size < 400 / 3 + 40  # one 200 m block holds about 16 samples
    assert split.description['n_blocks_test'] == len(test_blocks)
    # a random split of the same points shares most blocks between train and test
    random = splits.random_split(400, 1 / 3, 3)
    assert len({block[i] for i in random.train} & {block[i] for i in random.test}) > 15


def test_spatial_split_needs_two_blocks():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match='^BLOCK_SIZE: .*smaller block size'):
        splits.spatial_block_split(x, y, 100.0, 1 / 3, 0, 'BLOCK_SIZE')
    assert splits.default_block_size(np.array([0.0, 500.0]), np.array([0.0, 100.0])) == 100.0


@pytest.mark.parametrize('change, key, message', [
    (lambda f, t: (f[:5], t[:5]), 'INPUT', 'at least 6'),
    (lambda f, t: (f, np.full_like(t, 2.5)), 'TARGET', 'same value'),
    (lambda f, t: (np.column_stack([f[:, :3], np.ones(len(t))]), t), 'FEATURES', 'b4'),
])
def test_check_samples_refuses_unlearnable_input(change, key, message):
    features, target = change(*linear_truth(n=40))
    with pytest.raises(InputError, match=f'^{key}: .*{message}'):
        training.check_samples(features, target, ['b1', 'b2', 'b3', 'b4'], 're')


def test_check_samples_refuses_target_among_features():
    features, target = linear_truth(n=40)
    with pytest.raises(InputError, match='^FEATURES: .*also a feature'):
        training.check_samples(features, target, ['b1', 'b2', 'b3', 're'], 're')


def test_split_that_leaves_too_few_training_samples_is_refused():
    with pytest.raises(InputError, match='^TEST_FRACTION: .*training needs at least 6'):
        splits.random_split(8, 0.5, 0).check(6, 'TEST_FRACTION')


def test_cnn_training_stops_when_cancelled():
    features, target = linear_truth(n=40)
    with pytest.raises(CancelledError):
        cnn.train_cnn(features, target, cnn.CnnConfig(iterations=1000), cancel=lambda: True)
    split = splits.random_split(target.size, 1 / 3, 0)
    with pytest.raises(CancelledError):  # the baselines have no inner loop: checked before each
        training.train_models(features, target, split, ('mlr',), FAST, cancel=lambda: True)


def test_best_model_is_the_one_with_lowest_test_rmse():
    features, target = linear_truth(n=90)
    split = splits.random_split(target.size, 1 / 3, 0)
    options = training.TrainingOptions(cnn=cnn.CnnConfig(iterations=100), rf_trees=10)
    results = training.train_models(features, target, split, training.MODEL_TYPES, options)
    best = training.best_by_test_rmse(results)
    rmse = {r.model_type: np.sqrt(np.mean((r.test_predicted - target[split.test]) ** 2)) for r in results}
    assert best.model_type == min(rmse, key=rmse.get)
    assert best.model_type in ('mlr', 'plsr')  # the truth is linear


def test_cnn_learns_a_200_band_stack_and_its_onnx_graph_agrees():
    """200 bands tile into 16x16: the model learns the mixture and the exported graph (pooled 4x4 map,
    flattened in ONNX's channel-first order) gives the numpy model's predictions."""
    import onnxruntime
    spectra, target = hyperspectral_truth()
    split = splits.random_split(target.size, 1 / 3, 0)
    options = training.TrainingOptions(cnn=cnn.CnnConfig(iterations=150, batch_size=32))
    result = fit_and_score('cnn', spectra, target, split, options)
    assert result.model.side == 16 and result.model.params['w3'].shape == (16 * 32, 64)
    assert result.test.r2 > 0.8, result.test
    session = onnxruntime.InferenceSession(result.model.to_onnx().SerializeToString(),
                                           providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == ['N', 1, 16, 16]
    onnx_predicted = session.run(None, {'input': tile_features(spectra)})[0][:, 0]
    assert_allclose(onnx_predicted, result.model.predict(spectra), rtol=1e-4, atol=1e-4)
