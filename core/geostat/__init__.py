"""Geostatistics of the geochemical samples: experimental and fitted variograms, ordinary and
external-drift Kriging onto a raster grid, and the surface-to-surface sample set (Cheng et al.
2023's Kriging step, and the gridding of the fusion paper's coarse survey)."""
