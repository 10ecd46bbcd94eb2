"""Model configs as data: what each model of the repository is, batches and runs (``servables.repository``
writes them through Triton's own protobuf)."""

from __future__ import annotations

from typing import Any

from imaging.limits import MAX_IMAGE_BYTES, Limits
from servables import names
from servables.specs import Batching, PreprocessSpec

# Each request is one image (images differ in size, and Triton only batches equal shapes), so the per-image
# models need max_batch_size > 0 only to sit in an ensemble beside the batched ResNet.
IMAGE_MAX_BATCH = 8
NUM_CLASSES = 1000


def _tensor(name: str, dtype: str, dims: list[int], **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_type": dtype, "dims": dims, **extra}


def _parameters(**values: object) -> dict[str, Any]:
    return {key: {"string_value": str(value)} for key, value in values.items()}


def _warmup(tensor: str, dtype: str, dims: list[int], **data: bool) -> dict[str, Any]:
    """One request Triton runs through each instance when it loads the model (before it is marked ready), so the
    first real request after a load or a version swap does not pay for ONNX Runtime's lazy initialisation."""
    return {
        "name": f"warmup_{tensor.lower()}",
        "batch_size": 1,
        "inputs": {tensor: {"data_type": dtype, "dims": dims, **data}},
    }


_ENCODED = _tensor(names.IMAGE, "TYPE_UINT8", [-1])
_PIXELS = [-1, -1, 3]
# Under this much free /dev/shm (where the python backend moves every tensor) the decode step answers UNAVAILABLE,
# which also turns the gateway's readiness red: the backend would fail halfway through growing its regions.
MIN_FREE_SHARED_MEMORY_BYTES = 16 * 1024 * 1024
# For the models whose input size the client picks, the local runtime's runner: after a run on more than a 16 MP
# photo's pixels, ONNX Runtime's CPU arena gives back what it grew for it (3.1 GB per instance at 40 MP, else kept
# for good). Triton's onnxruntime backend ignores it (its memory.enable_memory_arena_shrinkage acts on every run).
_SHRINK_ARENA = {"arena_shrinkage_above_bytes": 16_000_000 * 3}
_CANNY_INPUTS = {
    names.LOW: "TYPE_FP32",
    names.HIGH: "TYPE_FP32",
    names.APERTURE_SIZE: "TYPE_INT32",
    names.L2_GRADIENT: "TYPE_BOOL",
    names.GRAY: "TYPE_BOOL",
    names.BLUR: "TYPE_INT32",
}
_CANNY_PASSED = {name: name for name in _CANNY_INPUTS}  # an ensemble step's map of the parameters, as they came


def decode_config(name: str, min_side: int) -> dict[str, Any]:
    """Encoded bytes -> BGR pixels, every upload rule enforced; ``min_side`` > 0 decodes JPEGs at the smallest
    DCT scale whose shorter side still reaches it (0: full resolution). On a GPU instance, nvJPEG decodes."""
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": IMAGE_MAX_BATCH,
        # Ragged: files of any size share one execute() call, which nvJPEG decodes as one batch on a GPU.
        "input": [{**_ENCODED, "allow_ragged_batch": True}],
        "output": [_tensor(names.PIXELS, "TYPE_UINT8", _PIXELS)],
        # KIND_AUTO: on a GPU host the instances land on the GPU and decode there (nvJPEG), else on the CPU.
        "instance_group": [{"count": 2}],
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
        "parameters": _parameters(
            min_side=min_side,
            max_image_bytes=MAX_IMAGE_BYTES,
            min_free_shared_memory_bytes=MIN_FREE_SHARED_MEMORY_BYTES,
            max_image_pixels=Limits.max_pixels,
            min_image_side=Limits.min_side,
            max_aspect_ratio=Limits.max_aspect_ratio,
        ),
    }


def preprocess_config(spec: PreprocessSpec) -> dict[str, Any]:
    return {
        "name": names.PREPROCESS,
        "backend": "onnxruntime",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [_tensor(names.IMAGE, "TYPE_UINT8", _PIXELS)],
        "output": [_tensor(names.INPUT, "TYPE_FP32", [3, spec.crop, spec.crop])],
        "instance_group": [{"count": 2}],
        # Honoured by Triton's onnxruntime backend and by the local runtime's runner alike.
        "parameters": _parameters(intra_op_thread_count=1, **_SHRINK_ARENA),
        # A photo-sized input whose shorter side is already the resize target: the size classify feeds it.
        "model_warmup": [_warmup(names.IMAGE, "TYPE_UINT8", [spec.resize, spec.resize, 3], random_data=True)],
    }


def resnet_config(arch: str, spec: PreprocessSpec, batching: Batching) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": arch,
        "backend": "onnxruntime",
        "max_batch_size": batching.max_batch_size,
        "input": [_tensor(names.INPUT, "TYPE_FP32", [3, spec.crop, spec.crop])],
        "output": [
            _tensor(names.LOGITS, "TYPE_FP32", [NUM_CLASSES]),
            _tensor(names.PROBABILITIES, "TYPE_FP32", [NUM_CLASSES], label_filename=names.LABELS),
        ],
        "instance_group": [{"count": batching.instances}],
        # Every version folder present is served, so a new version (`python -m export --version N`) answers beside
        # the current one once loaded; dropping one is a reload with a `specific` policy (the admin API does it).
        "version_policy": {"all": {}},
        "model_warmup": [_warmup(names.INPUT, "TYPE_FP32", [3, spec.crop, spec.crop], zero_data=True)],
    }
    if batching.enabled:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": batching.max_queue_delay_us,
            "preferred_batch_size": list(batching.preferred_batch_sizes),
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": batching.queue_timeout_us,
                "allow_timeout_override": True,
                "max_queue_size": batching.max_queue_size,
            },
        }
    return config


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
    return {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}


def _classify_ensemble(
    name: str, image: dict[str, Any], head: list[dict[str, Any]], pixels: str, arch: str, weights: str
) -> dict[str, Any]:
    """``head`` turns the ensemble's IMAGE into the tensor ``pixels``; preprocess and the ResNet follow. Labels
    on the output so clients can ask Triton for top-k (``class_count``); ``weights`` says what the ResNet learnt."""
    return {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [image],
        "output": [_tensor(names.PROBABILITIES, "TYPE_FP32", [NUM_CLASSES], label_filename=names.LABELS)],
        "ensemble_scheduling": {
            "step": [
                *head,
                _step(names.PREPROCESS, {names.IMAGE: pixels}, {names.INPUT: "preprocessed"}),
                _step(arch, {names.INPUT: "preprocessed"}, {names.PROBABILITIES: names.PROBABILITIES}),
            ]
        },
        "parameters": _parameters(weights=weights),
    }


def classify_config(arch: str, weights: str) -> dict[str, Any]:
    """The public entry point: the file's bytes, decoded at the scale the model needs."""
    decode = _step(names.DECODE_REDUCED, {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"})
    return _classify_ensemble(names.CLASSIFY, _ENCODED, [decode], "pixels", arch, weights)


def classify_pixels_config(arch: str, weights: str) -> dict[str, Any]:
    """For clients that already hold decoded BGR pixels: held to the upload rules first."""
    pixels = _tensor(names.IMAGE, "TYPE_UINT8", _PIXELS)
    check = _step(names.CHECK_PIXELS, {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"})
    return _classify_ensemble(names.CLASSIFY_PIXELS, pixels, [check], "pixels", arch, weights)


def _canny_inputs() -> list[dict[str, Any]]:
    return [_tensor(name, dtype, [1], optional=True) for name, dtype in _CANNY_INPUTS.items()]


def check_pixels_config() -> dict[str, Any]:
    """Decoded pixels -> the same pixels, once they and any Canny parameters hold to the rules: the head of the
    raw-pixel entry points, where no decode step enforces the upload rules and the ONNX graphs cannot refuse."""
    return {
        "name": names.CHECK_PIXELS,
        "backend": "python",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [{**_tensor(names.IMAGE, "TYPE_UINT8", _PIXELS), "allow_ragged_batch": True}, *_canny_inputs()],
        "output": [_tensor(names.PIXELS, "TYPE_UINT8", _PIXELS)],
        # It reads shapes and a few numbers: one instance, on the CPU, takes whatever the batcher hands over.
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
        "parameters": _parameters(
            max_image_pixels=Limits.max_pixels,
            min_image_side=Limits.min_side,
            max_aspect_ratio=Limits.max_aspect_ratio,
            aperture_sizes=",".join(map(str, APERTURE_SIZES)),
            max_blur=MAX_BLUR,
            max_threshold=MAX_THRESHOLD,
        ),
    }


def canny_graph_config(threads: int) -> dict[str, Any]:
    return {
        "name": names.CANNY_GRAPH,
        "backend": "onnxruntime",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [_tensor(names.IMAGE, "TYPE_UINT8", _PIXELS), *_canny_inputs()],
        "output": [_tensor(names.EDGE_MAP, "TYPE_UINT8", [-1, -1])],
        "instance_group": [{"count": 2}],
        "parameters": _parameters(intra_op_thread_count=threads, **_SHRINK_ARENA),
    }


def _edge_detector(pixels: str) -> dict[str, Any]:
    """The step that runs the graph on the ensemble tensor ``pixels`` with the request's Canny parameters."""
    return _step(
        names.CANNY_GRAPH,
        {names.IMAGE: pixels, **_CANNY_PASSED},
        {names.EDGE_MAP: names.EDGE_MAP},
    )


def canny_config() -> dict[str, Any]:
    """For clients that already hold decoded BGR pixels: held to the upload rules, and the parameters to their
    ranges, first."""
    check = _step(names.CHECK_PIXELS, {names.IMAGE: names.IMAGE, **_CANNY_PASSED}, {names.PIXELS: "pixels"})
    return {
        "name": names.CANNY,
        "platform": "ensemble",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [_tensor(names.IMAGE, "TYPE_UINT8", _PIXELS), *_canny_inputs()],
        "output": [_tensor(names.EDGE_MAP, "TYPE_UINT8", [-1, -1])],
        "ensemble_scheduling": {"step": [check, _edge_detector("pixels")]},
    }


def edges_config() -> dict[str, Any]:
    """The file's bytes, decoded at full resolution, then the edge detector."""
    return {
        "name": names.EDGES,
        "platform": "ensemble",
        "max_batch_size": IMAGE_MAX_BATCH,
        "input": [_ENCODED, *_canny_inputs()],
        "output": [_tensor(names.EDGE_MAP, "TYPE_UINT8", [-1, -1])],
        "ensemble_scheduling": {
            "step": [
                _step(names.DECODE, {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"}),
                _edge_detector("pixels"),
            ]
        },
    }


# The edge detector's parameter ranges (cv2.Canny's apertures; Gaussian sizes are odd): the gateway validates
# them, and check_pixels for the raw-pixel entry point; the graph clamps whatever reaches it straight.
APERTURE_SIZES = (3, 5, 7)
MAX_BLUR = 31
MAX_THRESHOLD = 10_000
# Both cores for one 12 MP edge map at concurrency 1; two instances still let two requests overlap.
CANNY_THREADS = 2


def model_configs(arch: str, spec: PreprocessSpec, batching: Batching, weights: str) -> dict[str, dict[str, Any]]:
    """Every model of the repository, by name."""
    configs = [
        decode_config(names.DECODE, min_side=0),
        decode_config(names.DECODE_REDUCED, min_side=spec.resize),
        preprocess_config(spec),
        resnet_config(arch, spec, batching),
        classify_config(arch, weights),
        classify_pixels_config(arch, weights),
        check_pixels_config(),
        canny_graph_config(CANNY_THREADS),
        canny_config(),
        edges_config(),
    ]
    return {config["name"]: config for config in configs}


def labelled_models(arch: str) -> list[str]:
    """The models whose output names a ``label_filename``: Triton resolves it in each model's own folder."""
    return [names.CLASSIFY, names.CLASSIFY_PIXELS, arch]
