"""Local launcher: Triton (and the gateway) on this machine, for `make serve` and the tests."""
