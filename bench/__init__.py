"""Benchmark: what the GPU, the batching and the gateway buy, measured side by side and priced."""
