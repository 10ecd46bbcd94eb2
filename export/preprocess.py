"""The OpenCV-style ImageNet preprocessing, as an ONNX graph and as the cv2 reference it must match.

The pipeline is the one people write by hand with OpenCV: resize so the shorter side is ``resize`` pixels with
``cv2.INTER_LINEAR`` (or ``cv2.INTER_CUBIC``), centre-crop ``crop`` x ``crop``, BGR -> RGB, scale to [0, 1],
normalise with the mean/std (ImageNet's by default), HWC -> CHW. In the graph every size that depends on the image
(resize target, crop offsets) is computed from ``Shape`` at run time, so one model serves images of any size.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from servables.names import IMAGE, INPUT
from servables.specs import PreprocessSpec

DEFAULT_SPEC = PreprocessSpec()
IMAGENET_MEAN = PreprocessSpec.mean
IMAGENET_STD = PreprocessSpec.std


def resized_size(height: int, width: int, resize: int) -> tuple[int, int]:
    """Shorter side -> ``resize``, longer side scaled and truncated, as torchvision's ``Resize(int)`` does."""
    if height <= width:
        return resize, int(resize * width / height)
    return int(resize * height / width), resize


CV2_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def reference_preprocess(
    image_bgr: np.ndarray, spec: PreprocessSpec = DEFAULT_SPEC, interpolation: int | None = None
) -> np.ndarray:
    """The hand-written OpenCV + numpy pipeline: ``uint8 [H, W, 3]`` BGR -> ``float32 [3, crop, crop]``.

    ``interpolation`` defaults to the spec's; ``cv2.INTER_AREA`` gives the anti-aliased downscale that ImageNet
    weights were trained on (PIL's antialiased resize): the reference the reduced-scale decode is measured against."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3] BGR, got {image_bgr.dtype} {list(image_bgr.shape)}")
    height, width = image_bgr.shape[:2]
    new_h, new_w = resized_size(height, width, spec.resize)
    if interpolation is None:
        interpolation = CV2_INTERPOLATIONS[spec.interpolation]
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - spec.crop) // 2, (new_w - spec.crop) // 2
    crop = resized[top : top + spec.crop, left : left + spec.crop, ::-1].astype(np.float32) / 255.0
    normalised = (crop - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def _const(name: str, values: object, dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _sampled(interpolation: str) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """``planes`` (the image as NCHW float) resized to ``out_h`` x ``out_w`` and centre-cropped at
    ``starts``..``ends``. Both interpolations resize planes: ONNX Runtime's NCHW resize is about twice as fast as
    its NHWC one (linear, a 375 x 500 photo to 224 x 224 planes, whole graph: 0.69 against 1.13 CPU-ms here) and
    downscales cubic only there. Cubic takes OpenCV's coefficient (-0.75; PIL and torchvision use -0.5), and its
    overshoot past black and white is clipped as OpenCV saturates to uint8."""
    n = helper.make_node
    resize = {"mode": "linear"} if interpolation == "linear" else {"mode": "cubic", "cubic_coeff_a": -0.75}
    sampled = "resized" if interpolation == "linear" else "sampled"
    nodes = [
        n("Concat", ["batch", "channels", "out_h", "out_w"], ["sizes"], axis=0),
        n("Resize", ["planes", "", "", "sizes"], [sampled], coordinate_transformation_mode="half_pixel", **resize),
    ]
    constants = [_const("axes_hw", [2, 3])]
    if interpolation != "linear":
        constants += [_const("black", 0.0, np.float32), _const("white", 255.0, np.float32)]
        nodes.append(n("Clip", [sampled, "black", "white"], ["resized"]))
    nodes.append(n("Slice", ["resized", "starts", "ends", "axes_hw"], ["cropped"]))
    return constants, nodes


def build_preprocess_model(spec: PreprocessSpec = DEFAULT_SPEC, opset: int = 17) -> onnx.ModelProto:
    """``IMAGE uint8 [N, H, W, 3]`` BGR -> ``INPUT float32 [N, 3, crop, crop]``, sizes computed at run time.

    ``N`` is Triton's batch dimension (images of one size); the resize runs in float with ``half_pixel``
    coordinates, which is the sampling ``cv2.INTER_LINEAR`` and ``cv2.INTER_CUBIC`` use (OpenCV then rounds to
    uint8, so the two differ by under one uint8 level).
    """
    n = helper.make_node
    scale = np.asarray(spec.std, np.float64) * 255.0
    sampling_constants, sampling = _sampled(spec.interpolation)
    initializers = [
        *sampling_constants,
        _const("idx_h", [1]),
        _const("idx_w", [2]),
        _const("idx_nc", [0, 3]),
        _const("resize", [spec.resize], np.float64),
        _const("crop", [spec.crop]),
        _const("two", [2]),
        _const("bgr_to_rgb", [2, 1, 0]),
        _const("inv_scale", (1.0 / scale).reshape(1, 3, 1, 1), np.float32),
        _const("offset", (np.asarray(spec.mean) / np.asarray(spec.std)).reshape(1, 3, 1, 1), np.float32),
    ]
    nodes = [
        n("Shape", [IMAGE], ["shape"]),
        n("Gather", ["shape", "idx_h"], ["h"]),
        n("Gather", ["shape", "idx_w"], ["w"]),
        # shorter side -> resize; longer side -> trunc(resize * long / short), in float64 like Python.
        n("Min", ["h", "w"], ["short"]),
        n("Cast", ["short"], ["short_f"], to=TensorProto.DOUBLE),
        n("Div", ["resize", "short_f"], ["factor"]),
        n("Cast", ["h"], ["h_f"], to=TensorProto.DOUBLE),
        n("Cast", ["w"], ["w_f"], to=TensorProto.DOUBLE),
        n("Mul", ["h_f", "factor"], ["h_scaled"]),
        n("Mul", ["w_f", "factor"], ["w_scaled"]),
        n("Floor", ["h_scaled"], ["h_floor"]),
        n("Floor", ["w_scaled"], ["w_floor"]),
        n("Cast", ["h_floor"], ["new_h"], to=TensorProto.INT64),
        n("Cast", ["w_floor"], ["new_w"], to=TensorProto.INT64),
        # The shorter side is exactly `resize` (no float error), whichever it is.
        n("Cast", ["resize"], ["resize_i"], to=TensorProto.INT64),
        n("LessOrEqual", ["h", "w"], ["h_is_short"]),
        n("Where", ["h_is_short", "resize_i", "new_h"], ["out_h"]),
        n("Not", ["h_is_short"], ["w_is_short"]),
        n("Where", ["w_is_short", "resize_i", "new_w"], ["out_w"]),
        n("Gather", ["shape", "idx_nc"], ["nc"]),
        n("Split", ["nc"], ["batch", "channels"], num_outputs=2, axis=0)
        if opset >= 18
        else n("Split", ["nc"], ["batch", "channels"], axis=0),
        # Centre crop: offsets (new - crop) // 2 on H and W.
        n("Sub", ["out_h", "crop"], ["spare_h"]),
        n("Sub", ["out_w", "crop"], ["spare_w"]),
        n("Div", ["spare_h", "two"], ["top"]),
        n("Div", ["spare_w", "two"], ["left"]),
        n("Concat", ["top", "left"], ["starts"], axis=0),
        n("Add", ["starts", "crop"], ["ends"]),
        # Planes first (uint8, a quarter of float's bytes to move), then the arithmetic over contiguous planes: on
        # NHWC the 3-wide innermost axis makes ONNX Runtime's resizes, broadcasts and gathers several times slower.
        n("Transpose", [IMAGE], ["image_planes"], perm=[0, 3, 1, 2]),
        n("Cast", ["image_planes"], ["planes"], to=TensorProto.FLOAT),
        *sampling,
        n("Gather", ["cropped", "bgr_to_rgb"], ["rgb"], axis=1),
        # (x / 255 - mean) / std  ==  x * (1 / (255 std)) - mean / std
        n("Mul", ["rgb", "inv_scale"], ["scaled"]),
        n("Sub", ["scaled", "offset"], [INPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "preprocess",
        [helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, spec.crop, spec.crop])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="export.preprocess")
    model.doc_string = (
        f"OpenCV-style preprocessing: shorter side {spec.resize} ({spec.interpolation}), centre crop {spec.crop}, "
        f"BGR->RGB, /255, mean {spec.mean}, std {spec.std}, HWC->CHW"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


# The sizes the parity check covers: square, both orientations, HD, a 12 MP photo, odd sizes, degenerate ones.
PARITY_SIZES = (
    (224, 224), (256, 256), (300, 400), (400, 300), (480, 640),
    (1080, 1920), (3000, 4000), (257, 1023), (1, 1), (1, 7), (9, 2),
)  # fmt: skip
MAX_LEVEL_DIFF = 1.01


def check_preprocess_parity(
    model: onnx.ModelProto, spec: PreprocessSpec, sizes: tuple[tuple[int, int], ...] = PARITY_SIZES
) -> dict[str, float]:
    """Worst difference, in uint8 levels, of the graph vs ``reference_preprocess`` per size; raises past 1.01.

    Uniform noise is the hardest input for an interpolation comparison (every neighbour differs).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    levels = np.asarray(spec.std, np.float32)[:, None, None] * 255.0
    worst: dict[str, float] = {}
    for height, width in sizes:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        graph = session.run([INPUT], {IMAGE: image[None]})[0][0]
        worst[f"{height}x{width}"] = float((np.abs(graph - reference_preprocess(image, spec)) * levels).max())
    failed = {size: diff for size, diff in worst.items() if not diff <= MAX_LEVEL_DIFF}
    if failed:
        raise AssertionError(f"preprocessing differs from cv2 by more than one uint8 level: {failed}")
    return worst
