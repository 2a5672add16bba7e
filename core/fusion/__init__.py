"""Regression fusion of a coarse geochemical grid with fine imagery (Remote Sens. 2023, 15, 1993,
Eqs. 1-3): grid resampling, Laplacian pyramid, K-means local regression models, the
block-wise fusion pipeline, quality measures and the report."""
