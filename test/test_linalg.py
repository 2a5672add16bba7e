"""core.linalg.matmul: equal to numpy's matmul on the BLAS path QGIS's executables take."""
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
