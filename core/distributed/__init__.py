"""Province scale: the block-wise steps of core/ run tile by tile on a Dask cluster (optional
`dask` / `distributed`), each task writing its own GeoTIFF tile, assembled by a VRT."""
