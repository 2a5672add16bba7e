"""The C library's heap: freed memory handed back to the system, and the thresholds of glibc's
malloc (malloc_trim, mallopt; nothing where the C library lacks them)."""
import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # a platform without a process-wide symbol table (Windows)
        return None


def _libc_function(name):
    """The C library's function `name`, or None where it has none (not glibc)."""
    return getattr(_libc(), name, None)


def release_freed_memory():
    """Hand the memory our block arrays freed back to the system (glibc's malloc_trim; nothing
    elsewhere). glibc keeps freed blocks of tens of MB in its heap, fragmented, so in a workflow, where
    every step runs in one QGIS process, each step would start from the previous steps' leftovers
    (bench/bench_workflow.py: the process grew ~70-130 MB per raster step)."""
    trim = _libc_function('malloc_trim')
    if trim is not None:
        trim(0)


def relax_malloc_trim():
    """Undo, in a Dask worker, the MALLOC_TRIM_THRESHOLD_=65536 its nanny starts it with: glibc then
    hands every freed large array back to the OS and numpy's block temporaries are page-faulted anew
    each time (kriging ran 2.5x slower). The thresholds set are the ones glibc's own dynamic rule
    grows to (mmap 32 MiB, trim twice that), so memory stays bounded by the block budget."""
    mallopt = _libc_function('mallopt')
    if mallopt is None:  # not glibc: nothing to undo
        return
    mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20)
    mallopt(M_TRIM_THRESHOLD, 64 * 2 ** 20)
