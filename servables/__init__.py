"""The Triton model repository as code: model and tensor names, configs, labels, the local-runtime rewrite.

Light on purpose (protobuf and tritonclient only): the gateway, the launcher, the benchmark, the examples, the
deploy command and the build-time exporter all read the repository through this package.
"""
