"""Shared Processing glue for the algorithms: the provider, the algorithm base class (parameters,
errors, progress), sample-layer and field readers, table sinks and the shared MASK input. Every
module directly in algorithms/ is one algorithm."""
