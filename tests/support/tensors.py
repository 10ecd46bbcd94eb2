"""Triton inputs built from numpy arrays, as the gateway and gRPC clients send them."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as aio
from tritonclient.utils import np_to_triton_dtype


def infer_input(name: str, array: np.ndarray) -> aio.InferInput:
    tensor = aio.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor
