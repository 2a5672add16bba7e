"""Image correction and spectral preprocessing: sensor tables and metadata readers, radiometric
calibration (DN to radiance to TOA reflectance), dark-object subtraction, spectral indices, the
vegetation/water/built-up mask and PCA (the image steps of Cheng et al. 2023, and
the PC2 and ASTER ratio inputs of the fusion paper)."""
