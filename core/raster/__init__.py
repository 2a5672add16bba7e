"""Raster plumbing shared by every method: block-wise GeoTIFF reading and writing within a memory
budget (with halos for kernels), raster values at points and the C library's heap between blocks.
The bottom layer: imports no other subpackage."""
