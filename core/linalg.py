"""Matrix products that run at optimised-BLAS speed in every process, QGIS's included.

QGIS's executables on Debian (qgis_process.bin, qgis.bin) link GSL's reference CBLAS
(libgslcblas) before libblas, so numpy's `@` / `np.dot`, which call `cblas_dgemm`, bind to GSL's
unoptimised loops there (seen with LD_DEBUG=bindings) and run several times slower than in plain
Python; no library loaded later can take those symbols back. scipy.linalg.blas calls the Fortran
symbols (`dgemm_`), which GSL does not define, so they reach the optimised BLAS that numpy and
scipy were built against (OpenBLAS here) in any process. Where numpy's own products are fine (plain
Python) they are used as they are: numpy loops over stacks of small matrices faster than Python.
"""
import ctypes
import ctypes.util
from contextlib import nullcontext
from functools import cache

import numpy as np
from scipy.linalg import blas

_GEMM = {np.dtype(np.float64): blas.dgemm, np.dtype(np.float32): blas.sgemm}
# CBLAS libraries that are unoptimised reference code
REFERENCE_CBLAS = ('libgslcblas', 'libcblas.so', '/blas/libblas')


class _DlInfo(ctypes.Structure):
    _fields_ = [('dli_fname', ctypes.c_char_p), ('dli_fbase', ctypes.c_void_p),
                ('dli_sname', ctypes.c_char_p), ('dli_saddr', ctypes.c_void_p)]


@cache
def global_cblas():
    """File of the library whose `cblas_dgemm` the process's global symbol scope resolves first
    (the one numpy binds to when it is there), '' when the scope has none (numpy then uses the
    BLAS it was linked with)."""
    try:
        symbol = ctypes.CDLL(None).cblas_dgemm
        libc = ctypes.CDLL(ctypes.util.find_library('c'))
    except (AttributeError, OSError, TypeError):
        return ''
    info = _DlInfo()
    if not libc.dladdr(ctypes.cast(symbol, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return ''
    return info.dli_fname.decode(errors='replace')


def numpy_uses_reference_blas():
    return any(name in global_cblas() for name in REFERENCE_CBLAS)


def _operand(matrix):
    """(array in Fortran order for gemm, transpose flag) without copying a C- or F-ordered matrix."""
    if matrix.flags.f_contiguous:
        return matrix, 0
    if matrix.flags.c_contiguous:
        return matrix.T, 1
    return np.asfortranarray(matrix), 0


def _gemm(gemm, a, b):
    a, trans_a = _operand(a)
    b, trans_b = _operand(b)
    return gemm(1.0, a, b, trans_a=trans_a, trans_b=trans_b)


def matmul(a, b):
    """`a @ b` of 2-D matrices or stacks of them ((T, n, m) @ (T, m, k), a 2-D operand is applied to
    every matrix of the other) through BLAS gemm; other dtypes and shapes fall back to numpy."""
    a, b = np.asarray(a), np.asarray(b)
    if not numpy_uses_reference_blas():
        return np.matmul(a, b)
    gemm = _GEMM.get(a.dtype) if a.dtype == b.dtype else None
    if gemm is None or not 2 <= a.ndim <= 3 or not 2 <= b.ndim <= 3 or 0 in a.shape + b.shape:
        return np.matmul(a, b)
    if a.ndim == b.ndim == 2:
        return _gemm(gemm, a, b)
    if 1 in (a.shape[-1], a.shape[-2], b.shape[-1]):
        # stacks of outer or matrix-vector products: one pass over each matrix, memory-bound, so a
        # reference BLAS's loops run them as fast as an optimised one, and numpy loops over the stack
        # in C where a Python loop of gemm calls costs several times the products (kriging's
        # (32 x 32) @ (32 x 1): 0.34 µs per matrix in numpy with GSL's CBLAS, 1.4 µs in gemm calls)
        return np.matmul(a, b)
    stack = a.shape[0] if a.ndim == 3 else b.shape[0]
    if a.ndim == b.ndim == 3 and a.shape[0] != b.shape[0]:
        return np.matmul(a, b)
    out = np.empty((stack, a.shape[-2], b.shape[-1]), dtype=a.dtype)
    for index in range(stack):
        out[index] = _gemm(gemm, a[index] if a.ndim == 3 else a, b[index] if b.ndim == 3 else b)
    return out


def gathered_matmul(a, stack, index):
    """`a @ stack[index]` for matrices a (T, k, m) and a stack (S, m, n), the stack's matrix of each
    of a's given by `index` (T,), in whichever memory order its product was faster in. Where
    numpy's products are unoptimised (see the module docstring) each run of equal indices is one
    gemm: a's rows of the run are contiguous, so (run·k, m) @ (m, n) is written straight into the
    output (kriging gives runs of ~8 matrices, the slots of one neighbour set, and a Python call per
    matrix cost more than its product)."""
    a, stack, index = np.asarray(a), np.asarray(stack), np.asarray(index)
    gemm = _GEMM.get(a.dtype) if a.dtype == stack.dtype else None
    if not numpy_uses_reference_blas() or gemm is None or a.ndim != 3 or stack.ndim != 3 or 0 in a.shape:
        # as (stack[index]ᵀ aᵀ)ᵀ: OpenBLAS runs kriging's (P x 33) @ (33 x 34) 10-25 % faster that way
        return np.matmul(stack[index].transpose(0, 2, 1), a.transpose(0, 2, 1)).transpose(0, 2, 1)
    a, stack = np.ascontiguousarray(a), np.ascontiguousarray(stack)
    out = np.empty(a.shape[:2] + stack.shape[2:], dtype=a.dtype)
    starts = np.flatnonzero(np.diff(index, prepend=index[0] - 1))
    for start, end in zip(starts, np.append(starts[1:], len(index))):
        rows = a[start:end].reshape(-1, a.shape[2])
        # (rows @ S)ᵀ = Sᵀ rowsᵀ: the transposes of C-ordered arrays are Fortran-ordered, no copies
        gemm(1.0, stack[index[start]].T, rows.T, beta=0.0, c=out[start:end].reshape(-1, stack.shape[2]).T,
             overwrite_c=1)
    return out


def single_threaded_blas():
    """Context limiting BLAS to one thread: OpenBLAS's threads make the many small matrix products
    of kriging and of the local fusion regression several times slower (measured on kriging: 7 ms
    instead of 1 ms per batch). No-op without threadpoolctl (installed with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api='blas')
