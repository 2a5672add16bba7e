"""The science of RS Geochem Inversion: numpy/scipy/scikit-learn/pykrige/onnxruntime, no qgis."""
