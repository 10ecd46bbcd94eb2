"""The edge-detection kind on Triton's side: ``edges`` (the file's bytes, decoded at full resolution) and ``canny``
(decoded pixels), the cv2.Canny parameters they take and the ranges the gateway holds them to."""

from __future__ import annotations

from typing import Any

from servables import names
from servables.configs import (
    CANNY_PARAMETERS,
    ENCODED,
    IMAGE_MAX_BATCH,
    PIXELS,
    SHRINK_ARENA,
    canny_parameter_inputs,
    check_pixels_config,
    check_step,
    decode_config,
    decode_model,
    ensemble,
    parameters,
    step,
    tensor,
)

KIND = "edges"  # the ``kind`` parameter of the entry point taking the file's bytes
# The optional inputs (their ranges are in servables.configs: check_pixels holds direct gRPC calls to them too).
PARAMETERS = CANNY_PARAMETERS
# Both cores for one 12 MP edge map at concurrency 1; two instances still let two requests overlap.
CANNY_THREADS = 2


def _edge_map() -> dict[str, Any]:
    return tensor(names.EDGE_MAP, "TYPE_UINT8", [-1, -1])


def canny_graph_config(threads: int = CANNY_THREADS) -> dict[str, Any]:
    """The edge detector's ONNX graph, behind both entry points."""
    return {
        "name": names.CANNY_GRAPH,
        "backend": "onnxruntime",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [PIXELS, *canny_parameter_inputs()],
        "output": [_edge_map()],
        "instance_group": [{"count": 2}],
        "parameters": parameters(intra_op_thread_count=threads, **SHRINK_ARENA),
    }


def _edge_detector() -> dict[str, Any]:
    """The step that runs the graph on the ensemble tensor "pixels" with the request's Canny parameters."""
    return step(
        names.CANNY_GRAPH,
        {names.IMAGE: "pixels", **{name: name for name in PARAMETERS}},
        {names.EDGE_MAP: names.EDGE_MAP},
    )


def canny_config() -> dict[str, Any]:
    """For clients that already hold decoded BGR pixels: held to the upload rules, and the parameters to their
    ranges, first."""
    steps = [check_step({name: name for name in PARAMETERS}), _edge_detector()]
    return ensemble(names.CANNY, [PIXELS, *canny_parameter_inputs()], [_edge_map()], steps)


def edges_config() -> dict[str, Any]:
    """The file's bytes, decoded at full resolution, then the edge detector."""
    steps = [step(decode_model(0), {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"}), _edge_detector()]
    return ensemble(names.EDGES, [ENCODED, *canny_parameter_inputs()], [_edge_map()], steps)


def configs() -> dict[str, dict[str, Any]]:
    """Every model the edge detector runs, by name."""
    models = [
        decode_config(decode_model(0), min_side=0),
        check_pixels_config(),
        canny_graph_config(),
        canny_config(),
        edges_config(),
    ]
    return {config["name"]: config for config in models}
