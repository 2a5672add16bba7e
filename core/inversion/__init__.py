"""Quantitative inversion (Cheng et al. 2023): correlation of content with bands, the
paper's CNN and the MLR/PLSR/random-forest baselines, train/test splits, metrics, the ONNX model
contract and block-wise inference over a raster."""
