"""The GPU benchmark kit: what a borrowed NVIDIA host with no network needs to run Triton and measure it.

``python -m gpu_kit.build`` (``make gpu-kit``) packs a trimmed ``tritonserver`` (the ``nvidia-pytriton`` wheel's
binary, python backend, Python stubs and only the shared libraries they load) and the wheels that host lacks;
``python3 -m gpu_kit.device`` runs there: it unpacks the kit, makes the stub's environment, generates a small
model repository with GPU instances, measures classification over gRPC and writes the report.
"""
