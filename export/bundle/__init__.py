"""Templates of the TensorRT device build bundle (copied verbatim into each bundle)."""
