"""The science of RS Geochem Inversion: numpy/scipy/scikit-learn/onnxruntime, no qgis."""
