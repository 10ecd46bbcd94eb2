"""The edge-detection kind on Triton's side: ``edges`` (the file's bytes, decoded at full resolution) and ``canny``
(decoded pixels), the cv2.Canny parameters they take and the ranges the gateway holds them to."""

from __future__ import annotations

from typing import Any

from servables import names
from servables.configs import (
    ENCODED,
    IMAGE_MAX_BATCH,
    PIXELS,
    decode_config,
    decode_model,
    ensemble,
    parameters,
    step,
    tensor,
)

KIND = "edges"  # the ``kind`` parameter of the entry point taking the file's bytes
# The optional inputs: cv2.Canny's parameters, and the grayscale/blur option.
PARAMETERS = {
    names.LOW: "TYPE_FP32",
    names.HIGH: "TYPE_FP32",
    names.APERTURE_SIZE: "TYPE_INT32",
    names.L2_GRADIENT: "TYPE_BOOL",
    names.GRAY: "TYPE_BOOL",
    names.BLUR: "TYPE_INT32",
}
# Their ranges (cv2.Canny's apertures; Gaussian sizes are odd): the gateway validates them, the graph clamps
# whatever reaches it straight.
APERTURE_SIZES = (3, 5, 7)
MAX_BLUR = 31
MAX_THRESHOLD = 10_000
# Both cores for one 12 MP edge map at concurrency 1; two instances still let two requests overlap.
CANNY_THREADS = 2


def _parameter_inputs() -> list[dict[str, Any]]:
    return [tensor(name, dtype, [1], optional=True) for name, dtype in PARAMETERS.items()]


def _edge_map() -> dict[str, Any]:
    return tensor(names.EDGE_MAP, "TYPE_UINT8", [-1, -1])


def canny_config(threads: int = CANNY_THREADS) -> dict[str, Any]:
    return {
        "name": names.CANNY,
        "backend": "onnxruntime",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [PIXELS, *_parameter_inputs()],
        "output": [_edge_map()],
        "instance_group": [{"count": 2}],
        "parameters": parameters(intra_op_thread_count=threads),
    }


def edges_config() -> dict[str, Any]:
    """The file's bytes, decoded at full resolution, then the edge detector."""
    steps = [
        step(decode_model(0), {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"}),
        step(
            names.CANNY,
            {names.IMAGE: "pixels", **{name: name for name in PARAMETERS}},
            {names.EDGE_MAP: names.EDGE_MAP},
        ),
    ]
    return ensemble(
        names.EDGES, [ENCODED, *_parameter_inputs()], [tensor(names.EDGE_MAP, "TYPE_UINT8", [-1, -1])], steps
    )


def configs() -> dict[str, dict[str, Any]]:
    """Every model the edge detector runs, by name."""
    models = [decode_config(decode_model(0), min_side=0), canny_config(), edges_config()]
    return {config["name"]: config for config in models}
