"""core.linalg.matmul: equal to numpy's matmul on the BLAS path QGIS's executables take."""
import os

import numpy as np
import pytest

from rsgeochem.core import linalg


@pytest.mark.parametrize('shapes', [((30, 20), (20, 7)), ((5, 34, 33), (5, 33, 16)), ((34, 33), (4, 33, 9)),
                                    ((4, 6, 3), (3, 2)), ((1, 1), (1, 1)), ((3, 0), (0, 4)),
                                    ((6, 1, 1), (6, 1, 32)), ((6, 32, 1), (6, 1, 1))])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_matmul_through_scipy_blas_equals_numpy(monkeypatch, shapes, dtype):
    monkeypatch.setattr(linalg, 'numpy_uses_reference_blas', lambda: True)
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=shape).astype(dtype) for shape in shapes)
    transposed_copy = np.swapaxes(np.swapaxes(b, -1, -2).copy(), -1, -2)  # F-ordered matrices
    for left, right in ((a, b), (np.asfortranarray(a), b), (a, transposed_copy), (a, b[..., ::-1])):
        expected = np.matmul(left, right)
        result = linalg.matmul(left, right)
        assert result.shape == expected.shape and result.dtype == expected.dtype
        np.testing.assert_allclose(result, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_reference_cblas_is_recognised(monkeypatch):
    monkeypatch.setattr(linalg, 'global_cblas', lambda: '/lib/x86_64-linux-gnu/libgslcblas.so.0')
    assert linalg.numpy_uses_reference_blas()
    monkeypatch.setattr(linalg, 'global_cblas', lambda: '')
    assert not linalg.numpy_uses_reference_blas()


@pytest.mark.parametrize('reference_blas', [True, False])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_gathered_matmul_equals_numpy(monkeypatch, reference_blas, dtype):
    """a @ stack[index] with runs of equal indices (one gemm each on the reference-BLAS path), runs
    of one, indices out of order and a non-contiguous a."""
    monkeypatch.setattr(linalg, 'numpy_uses_reference_blas', lambda: reference_blas)
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(5, 33, 35)).astype(dtype)
    index = np.array([3, 3, 3, 0, 4, 4, 1, 3, 2, 2, 2, 2])
    a = rng.normal(size=(len(index), 32, 33)).astype(dtype)
    for left in (a, a[:, ::2], a[..., ::-1]):
        expected = np.matmul(left, stack[index])
        result = linalg.gathered_matmul(left, stack, index)
        assert result.shape == expected.shape and result.dtype == expected.dtype
        np.testing.assert_allclose(result, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


IN_A_GSL_PROCESS = '''
import sys
import pytest
sys.path.insert(0, sys.argv[1])
from rsgeochem.core import linalg
assert linalg.numpy_uses_reference_blas(), 'numpy did not bind to GSL: ' + linalg.global_cblas()
sys.exit(pytest.main([sys.argv[2], '-k', 'exact_grid or blocks or measurement_error_grid']))
'''


def test_kriging_where_numpy_binds_to_gsl_cblas_as_in_qgis_executables():
    """In a process whose numpy binds cblas_dgemm to GSL's reference CBLAS (LD_PRELOAD, as the
    Debian QGIS executables link it), the kriging tests that compare grids with per-pixel Kriging
    and with pykrige pass through core.linalg's gemm path."""
    import ctypes.util
    import subprocess
    import sys

    from paths import CHECKOUT, PLUGIN_PATH
    gsl = ctypes.util.find_library('gslcblas')
    if not gsl:
        pytest.skip("GSL's CBLAS is not installed (QGIS's Debian packages bring it)")
    result = subprocess.run([sys.executable, '-c', IN_A_GSL_PROCESS, str(PLUGIN_PATH),
                             str(CHECKOUT / 'test' / 'test_kriging.py')],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, LD_PRELOAD=gsl))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
