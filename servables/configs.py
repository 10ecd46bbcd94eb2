"""The pieces every model config is built from, as data (``servables.repository`` writes them through Triton's own
protobuf). Each model kind builds its own models from these: ``servables.classification``, ``servables.edges``."""

from __future__ import annotations

from typing import Any

from imaging.limits import MAX_IMAGE_BYTES, Limits
from servables import names
from servables.specs import PreprocessSpec

# Each request is one image (images differ in size, and Triton only batches equal shapes), so the per-image
# models need max_batch_size > 0 only to sit in an ensemble beside a batched network.
IMAGE_MAX_BATCH = 8
PIXELS_DIMS = [-1, -1, 3]  # decoded BGR pixels of any size, what cv2.imdecode returns
# The python steps at the head of the entry points take what the batcher hands over at once, from a queue bounded
# like the network's: a direct gRPC client cannot queue unbounded work there (past it: "exceeds maximum queue size").
HEAD_STEP_BATCHING = {"max_queue_delay_microseconds": 0, "default_queue_policy": {"max_queue_size": 512}}
# Under this much free /dev/shm (where the python backend moves every tensor) the decode step answers UNAVAILABLE,
# which also turns the gateway's readiness red: the backend would fail halfway through growing its regions.
MIN_FREE_SHARED_MEMORY_BYTES = 16 * 1024 * 1024
# For the models whose input size the client picks, the local runtime's runner: after a run on more than a 16 MP
# photo's pixels, ONNX Runtime's CPU arena gives back what it grew for it (3.1 GB per instance at 40 MP, else kept
# for good). Triton's onnxruntime backend ignores it (its memory.enable_memory_arena_shrinkage acts on every run).
SHRINK_ARENA = {"arena_shrinkage_above_bytes": 16_000_000 * 3}
# The edge detector's optional inputs (cv2.Canny's parameters, and the grayscale/blur option) and their ranges
# (cv2.Canny's apertures; Gaussian sizes are odd). The gateway holds REST calls to them, check_pixels direct gRPC
# calls; the graph clamps whatever reaches it straight.
CANNY_PARAMETERS = {
    names.LOW: "TYPE_FP32",
    names.HIGH: "TYPE_FP32",
    names.APERTURE_SIZE: "TYPE_INT32",
    names.L2_GRADIENT: "TYPE_BOOL",
    names.GRAY: "TYPE_BOOL",
    names.BLUR: "TYPE_INT32",
}
APERTURE_SIZES = (3, 5, 7)
MAX_BLUR = 31
MAX_THRESHOLD = 10_000


def tensor(name: str, dtype: str, dims: list[int], **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_type": dtype, "dims": dims, **extra}


def parameters(**values: object) -> dict[str, Any]:
    return {key: {"string_value": str(value)} for key, value in values.items()}


def warmup(name: str, dtype: str, dims: list[int], **data: bool) -> dict[str, Any]:
    """One request Triton runs through each instance when it loads the model (before it is marked ready), so the
    first real request after a load or a version swap does not pay for ONNX Runtime's lazy initialisation."""
    return {
        "name": f"warmup_{name.lower()}",
        "batch_size": 1,
        "inputs": {name: {"data_type": dtype, "dims": dims, **data}},
    }


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
    """One step of an ensemble: its model's tensors (keys) mapped to the ensemble's (values)."""
    return {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}


def ensemble(
    name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], steps: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """Steps as data: a later rewrite (the local runtime's, a fused decode) reads and edits the list."""
    return {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": inputs,
        "output": outputs,
        "ensemble_scheduling": {"step": steps},
        **extra,
    }


ENCODED = tensor(names.IMAGE, "TYPE_UINT8", [-1])  # the file's bytes, as uploaded
PIXELS = tensor(names.IMAGE, "TYPE_UINT8", PIXELS_DIMS)


def decode_model(min_side: int) -> str:
    """The decode step that serves a classifier resizing to ``min_side``: one per size, shared by the classifiers
    that use it (``decode_reduced`` for the default's 256, ``decode_reduced_<size>`` for others); 0 decodes at full
    resolution (``decode``, the edge detector's)."""
    if min_side == 0:
        return names.DECODE
    return names.DECODE_REDUCED if min_side == PreprocessSpec.resize else f"{names.DECODE_REDUCED}_{min_side}"


def decode_config(name: str, min_side: int) -> dict[str, Any]:
    """Encoded bytes -> BGR pixels, every upload rule enforced; ``min_side`` > 0 decodes JPEGs at the smallest
    DCT scale whose shorter side still reaches it (0: full resolution). On a GPU instance, nvJPEG decodes."""
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": IMAGE_MAX_BATCH,
        # Ragged: files of any size share one execute() call, which nvJPEG decodes as one batch on a GPU.
        "input": [{**ENCODED, "allow_ragged_batch": True}],
        "output": [tensor(names.PIXELS, "TYPE_UINT8", PIXELS_DIMS)],
        # KIND_AUTO: on a GPU host the instances land on the GPU and decode there (nvJPEG), else on the CPU.
        "instance_group": [{"count": 2}],
        "dynamic_batching": HEAD_STEP_BATCHING,
        "parameters": parameters(
            min_side=min_side,
            max_image_bytes=MAX_IMAGE_BYTES,
            min_free_shared_memory_bytes=MIN_FREE_SHARED_MEMORY_BYTES,
            max_image_pixels=Limits.max_pixels,
            min_image_side=Limits.min_side,
            max_aspect_ratio=Limits.max_aspect_ratio,
        ),
    }


def canny_parameter_inputs() -> list[dict[str, Any]]:
    return [tensor(name, dtype, [1], optional=True) for name, dtype in CANNY_PARAMETERS.items()]


def check_pixels_config() -> dict[str, Any]:
    """Decoded pixels -> the same pixels, once they and any Canny parameters hold to the rules: the head of the
    raw-pixel entry points, where no decode step enforces the upload rules and the ONNX graphs cannot refuse."""
    return {
        "name": names.CHECK_PIXELS,
        "backend": "python",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [{**PIXELS, "allow_ragged_batch": True}, *canny_parameter_inputs()],
        "output": [tensor(names.PIXELS, "TYPE_UINT8", PIXELS_DIMS)],
        # It reads shapes and a few numbers: one instance, on the CPU, takes whatever the batcher hands over.
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "dynamic_batching": HEAD_STEP_BATCHING,
        "parameters": parameters(
            max_image_pixels=Limits.max_pixels,
            min_image_side=Limits.min_side,
            max_aspect_ratio=Limits.max_aspect_ratio,
            aperture_sizes=",".join(map(str, APERTURE_SIZES)),
            max_blur=MAX_BLUR,
            max_threshold=MAX_THRESHOLD,
        ),
    }


def check_step(passed: dict[str, str]) -> dict[str, Any]:
    """``check_pixels`` on the ensemble's IMAGE (and the tensors ``passed``), its answer as the tensor "pixels"."""
    return step(names.CHECK_PIXELS, {names.IMAGE: names.IMAGE, **passed}, {names.PIXELS: "pixels"})
