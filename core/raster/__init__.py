"""Raster plumbing shared by every method: block-wise GeoTIFF reading and writing within a memory
budget (with halos for kernels) and raster values at points. The bottom layer: imports no other
subpackage."""
