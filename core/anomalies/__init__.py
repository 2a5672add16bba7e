"""High-anomaly areas of a content map (the last step of Cheng et al.
2023): thresholds (mean + k SD,
median + k MAD, percentile, concentration-area fractal) and ranked polygons."""
