"""cv2.Canny as a hand-built ONNX graph, and the OpenCV pipeline it is held to.

Default semantics are ``cv2.Canny(image_bgr, LOW, HIGH)`` on the colour image: Sobel per channel (BORDER_REPLICATE),
per pixel the channel with the largest magnitude (the first on ties), L1 magnitude, non-maximum suppression with
cv2's Q15 tan(22.5) sector test and its ``>``/``>=`` tie rules, double threshold and hysteresis. Optional inputs
select the other cv2.Canny parameters (aperture 3/5/7 with cv2's 1/16 scale at 7, L2 magnitude compared squared)
and the older pipeline (cvtColor's Q15 gray, GaussianBlur's Q8 fixed-point kernel). Every value before hysteresis
is an integer, or a multiple of a power of two, that its dtype holds exactly (float32 below 2**24, int32/int64 for
L2's squares and the sector test), so the graph is cv2 bit for bit whatever order a runtime sums in.

Speed comes from doing little at full resolution. The image is padded once and flattened, so every shift of a
Sobel tap is a contiguous Slice and a filter is one Sum (Conv is several times slower on these shapes in
onnxruntime). Only the magnitude, its channel maximum and the ``> LOW`` test run over every pixel; suppression
runs on the candidates' flat positions (NonZero + Gather), and hysteresis labels the surviving pixels' 8-connected
components by min-label propagation with pointer jumping (a Loop that stops when no label changes: about
log2 of the longest chain, not its length). Strong pixels are numbered first, so a component keeps its pixels iff
its smallest label is a strong one. That is exact: the graph returns cv2.Canny's edge map, not an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from servables.configs import MAX_BLUR  # larger sizes are clamped to it; even ones act as the next odd
from servables.names import APERTURE_SIZE, BLUR, EDGE_MAP, GRAY, HIGH, IMAGE, L2_GRADIENT, LOW

DEFAULT_LOW = 100.0
DEFAULT_HIGH = 200.0
DEFAULT_APERTURE = 3
APERTURES = (3, 5, 7)  # cv2.Canny's; other values are clamped: below 4 -> 3, 4 and 5 -> 5, above -> 7
OPTIONAL_INPUTS = (LOW, HIGH, APERTURE_SIZE, L2_GRADIENT, GRAY, BLUR)

# cvtColor BGR2GRAY on 8-bit images, B, G, R in Q15: equal to cv2 on all 2**24 colours.
_GRAY_Q15 = (3735, 19235, 9798)
_TG22_Q15 = 13573  # cv2.Canny's round(tan(22.5 deg) * 2**15)
_PAD = max(APERTURES) // 2  # every aperture pads by the largest reach, so all share one flat geometry
_INT64_MAX = np.iinfo(np.int64).max
_INT32_MAX = np.iinfo(np.int32).max
_FORWARD = ((0, 1), (1, -1), (1, 0), (1, 1))  # the 8-neighbours after a pixel in raster order: each pair once


def gaussian_kernel_q8(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """GaussianBlur's 8-bit kernel: OpenCV's float kernel diffused to Q8 integers that sum to 256.

    This is ``getGaussianKernelFixedPoint_ED`` (smooth.dispatch.cpp): each outer tap's rounding error is
    carried into the next and the centre takes the rest, which makes the blur bit-exact with cv2's.
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"blur size must be a positive odd number, got {ksize}")
    kernel = cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).ravel()
    half = ksize // 2
    taps = np.empty(ksize, np.int64)
    error = 0.0
    for i in range(half):
        adjusted = kernel[i] * 256.0 + error
        taps[i] = taps[-1 - i] = np.rint(adjusted)  # cvRound: half to even
        error = adjusted - taps[i]
    taps[half] = 256 - 2 * taps[:half].sum()
    return taps


@dataclass
class _Builder:
    """Collects one (sub)graph's nodes; constants go to the model's top graph, names are unique model-wide."""

    opset: int
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    counter: count[int] = field(default_factory=count)
    nodes: list[onnx.NodeProto] = field(default_factory=list)

    def child(self) -> _Builder:
        return _Builder(self.opset, self.initializers, self.counter)

    def name(self, hint: str) -> str:
        return f"{hint}_{next(self.counter)}"

    def const(self, value: object, dtype: type = np.float32) -> str:
        name = self.name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: object) -> str:
        name = out or self.name(op_type.lower())
        node = helper.make_node(op_type, list(inputs), [name], name=name)
        node.attribute.extend(helper.make_attribute(key, value) for key, value in sorted(attrs.items()))
        self.nodes.append(node)
        return name

    def take(self, data: str, indices: str) -> str:
        """``data[indices]`` for 1-D data: GatherElements, about 8x faster than Gather in onnxruntime 1.2x."""
        return self.op("GatherElements", data, indices, axis=0)

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int = 0) -> str:
        """ReduceMin/ReduceMax: ``axes`` moved from attribute to input in opset 18."""
        if self.opset >= 18:
            return self.op(op_type, x, self.const([axis], np.int64), keepdims=keepdims)
        return self.op(op_type, x, axes=[axis], keepdims=keepdims)

    def graph(
        self, name: str, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[tuple[str, int]]
    ) -> onnx.GraphProto:
        """This builder's nodes as a subgraph (If branch, Loop body) returning ``outputs`` (name, elem type)."""
        produced = {output for node in self.nodes for output in node.output}
        returned = []
        for value, elem_type in outputs:
            # A subgraph output must be produced inside it: outer values and constants pass through an Identity.
            alias = value if value in produced else self.op("Identity", value)
            returned.append(helper.make_tensor_value_info(alias, elem_type, None))
        return helper.make_graph(self.nodes, self.name(name), list(inputs), returned)

    def branch(
        self,
        cond: str,
        then: _Builder,
        then_out: Sequence[tuple[str, int]],
        other: _Builder,
        other_out: Sequence[tuple[str, int]],
    ) -> list[str]:
        outs = [self.name("if") for _ in then_out]
        self.nodes.append(
            helper.make_node(
                "If",
                [cond],
                outs,
                then_branch=then.graph("then", [], then_out),
                else_branch=other.graph("else", [], other_out),
            )
        )
        return outs


def _shift(g: _Builder, flat: str, start: str, end: str) -> str:
    return g.op("Slice", flat, start, end, g.const([0], np.int64))


def _filter(g: _Builder, flat: str, taps: np.ndarray, stride: str, shifts: dict[tuple[str, int], str]) -> str:
    """Correlate a flat image with an odd integer kernel along ``stride`` (1: x, the padded width: y).

    Output j is ``sum_i taps[i] * flat[j + i * stride]``, ``2 * radius * stride`` shorter than the input. Taps of
    1 and 2 repeat an operand (an Add is cheaper than a Mul), larger ones multiply, negative ones are subtracted.
    ``shifts`` keeps the Slices already made, so filters of one input share them.
    """
    radius = len(taps) // 2
    positive: list[str] = []
    negative: list[str] = []
    for i, tap in enumerate(int(t) for t in taps):
        if tap == 0:
            continue
        if (flat, i) not in shifts:
            start = g.op("Mul", stride, g.const([i], np.int64))
            end = (
                g.op("Mul", stride, g.const([i - 2 * radius], np.int64))
                if i < 2 * radius
                else g.const([_INT64_MAX], np.int64)
            )
            shifts[flat, i] = _shift(g, flat, start, end)
        term = shifts[flat, i]
        terms = positive if tap > 0 else negative
        terms.extend([term] * abs(tap) if abs(tap) <= 2 else [g.op("Mul", term, g.const(float(abs(tap))))])
    total = _add_all(g, positive)
    return g.op("Sub", total, _add_all(g, negative)) if negative else total


def _add_all(g: _Builder, terms: list[str]) -> str:
    """A balanced tree of Adds: onnxruntime's Sum of four inputs is four times slower than three Adds."""
    while len(terms) > 1:
        terms = [g.op("Add", a, b) for a, b in zip(terms[::2], terms[1::2], strict=False)] + terms[len(terms) & ~1 :]
    return terms[0]


def sobel_taps(aperture: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2's separable Sobel kernels of one size: (derivative, smoothing) as integers."""
    derivative, smoothing = cv2.getDerivKernels(1, 0, aperture, normalize=False, ktype=cv2.CV_32F)
    return np.rint(derivative.ravel()).astype(np.int64), np.rint(smoothing.ravel()).astype(np.int64)


def _sobel(g: _Builder, flat: str, wp: str, aperture: int) -> tuple[str, str, str]:
    """dx, dy of a flat padded image and the flat position of their first element (they are shorter)."""
    derivative, smoothing = sobel_taps(aperture)
    one = g.const([1], np.int64)
    shifts: dict[tuple[str, int], str] = {}
    dx = _filter(g, _filter(g, flat, derivative, one, shifts), smoothing, wp, shifts)
    dy = _filter(g, _filter(g, flat, smoothing, one, shifts), derivative, wp, shifts)
    if aperture == 7:  # cv2.Canny scales Sobel 7 by 1/16 into int16, rounding half to even (as Round does)
        dx, dy = (g.op("Round", g.op("Mul", d, g.const(1.0 / 16.0))) for d in (dx, dy))
    radius = aperture // 2
    first = g.op("Add", g.op("Mul", wp, g.const([radius], np.int64)), g.const([radius], np.int64))
    return dx, dy, first


def _candidates(
    g: _Builder, dx: str, dy: str, first: str, geometry: dict[str, str], low: str, high: str, l2: bool
) -> tuple[str, str]:
    """Non-maximum suppression and double threshold: flat positions of edge pixels, strong ones first, and
    how many are strong. L1 runs in float32, L2 (squares up to 2**30) in int32; both are exact."""
    dtype = TensorProto.INT32 if l2 else TensorProto.FLOAT
    if l2:
        ix, iy = (g.op("Cast", d, to=TensorProto.INT32) for d in (dx, dy))
        norm = g.op("Add", g.op("Mul", ix, ix), g.op("Mul", iy, iy))
    else:
        norm = g.op("Add", g.op("Abs", dx), g.op("Abs", dy))
    # Back to the padded geometry (zeros where Sobel had no room), one row per channel.
    pads = g.op("Concat", first, first, axis=0)
    norms = g.op("Reshape", g.op("Pad", norm, pads), g.op("Concat", g.const([-1], np.int64), geometry["plane"], axis=0))
    # The channel maximum, zero outside the image: suppression compares with zero there, as cv2 does.
    # Max of the first, middle and last row: the three channels, or the gray one thrice (ReduceMax is 4x slower).
    channels = g.op("Slice", g.op("Shape", norms), g.const([0], np.int64), g.const([1], np.int64))
    middle = g.op("Div", channels, g.const([2], np.int64))
    rows = [
        (g.const([0], np.int64), g.const([1], np.int64)),
        (middle, g.op("Add", middle, g.const([1], np.int64))),
        (g.const([-1], np.int64), g.const([_INT64_MAX], np.int64)),
    ]
    magnitude = g.op("Max", *(g.op("Slice", norms, start, end, g.const([0], np.int64)) for start, end in rows))
    magnitude = g.op("Reshape", magnitude, geometry["shape"])
    for mask in ("rows", "cols"):
        magnitude = g.op("Mul", magnitude, g.op("Cast", geometry[mask], to=dtype))
    magnitude = g.op("Reshape", magnitude, g.const([-1], np.int64))
    low, high = (g.op("Cast", t, to=dtype) for t in (low, high))
    pos = g.op("Reshape", g.op("NonZero", g.op("Greater", magnitude, low)), g.const([-1], np.int64))

    # Per candidate: the winning channel (first of the largest norms) and its dx, dy.
    channel_count = g.op("Squeeze", channels, g.const([0], np.int64))
    offsets = g.op("Mul", g.op("Range", g.const(0, np.int64), channel_count, g.const(1, np.int64)), geometry["plane"])
    per_channel = g.op("Add", g.op("Unsqueeze", offsets, g.const([1], np.int64)), pos)
    winner = g.op(
        "ArgMax",
        g.op(
            "Reshape",
            g.take(
                g.op("Reshape", norms, g.const([-1], np.int64)), g.op("Reshape", per_channel, g.const([-1], np.int64))
            ),
            g.op("Shape", per_channel),
            allowzero=1,  # no candidates: a [C, 0] shape, not "copy dimension 1"
        ),
        axis=0,
        keepdims=0,
        select_last_index=0,
    )
    at = g.op("Sub", g.op("Add", g.op("Mul", winner, geometry["plane"]), pos), first)
    cx, cy = (g.op("Cast", g.take(d, at), to=TensorProto.INT64) for d in (dx, dy))
    m = g.take(magnitude, pos)

    # cv2's sectors in its integers: along x if |dy| 2**15 < 13573 |dx|, along y if |dy| 2**15 > (13573 + 2**16) |dx|.
    ax, ay = g.op("Abs", cx), g.op("Mul", g.op("Abs", cy), g.const(2**15, np.int64))
    tg22 = g.op("Mul", ax, g.const(_TG22_Q15, np.int64))
    along_x = g.op("Less", ay, tg22)
    along_y = g.op("Greater", ay, g.op("Add", tg22, g.op("Mul", ax, g.const(2**16, np.int64))))
    anti = g.op("Xor", g.op("Less", cx, g.const(0, np.int64)), g.op("Less", cy, g.const(0, np.int64)))
    wp = geometry["wp"]
    diagonal = g.op("Where", anti, g.op("Sub", wp, g.const(1, np.int64)), g.op("Add", wp, g.const(1, np.int64)))
    step = g.op("Where", along_x, g.const(1, np.int64), g.op("Where", along_y, wp, diagonal))
    behind, ahead = (g.take(magnitude, g.op(op, pos, step)) for op in ("Sub", "Add"))
    # m beats the neighbour behind (>) and the one ahead (>= along x and y, > on diagonals).
    tie_passes = g.op("And", g.op("Or", along_x, along_y), g.op("Equal", m, ahead))
    beats_ahead = g.op("Or", g.op("Greater", m, ahead), tie_passes)
    ridge = g.op("And", g.op("Greater", m, behind), beats_ahead)
    strong = g.op("And", ridge, g.op("Greater", m, high))
    weak_only = g.op("And", ridge, g.op("Not", strong))
    strong_pos = g.op("Compress", pos, strong, axis=0)
    ordered = g.op("Concat", strong_pos, g.op("Compress", pos, weak_only, axis=0), axis=0)
    return ordered, g.op("Gather", g.op("Shape", strong_pos), g.const(0, np.int64))


def _hysteresis(g: _Builder, ordered: str, strong_count: str, geometry: dict[str, str]) -> str:
    """Keep the edge pixels whose 8-connected component holds a strong one: uint8 0/255 over the flat plane.

    Connected components by Shiloach-Vishkin hooking over the pixel pairs that touch (each pair once): labels
    start as each pixel's rank, strong pixels first; each step, for every pair whose labels differ and whose larger
    label is a root, that root is hooked onto the smaller label (concurrent hooks of one root are all valid, any
    may win the scatter), then every label jumps twice to its label's label. Labels only fall, so the Loop ends
    exactly when a step changes nothing, with every pixel labelled by its component's smallest rank: about 6
    steps on photographs up to 12 MP, where plain label propagation needs one step per pixel of the longest chain
    (130 to 330 on 0.3 to 2 MP images).
    """
    column = g.op("Unsqueeze", ordered, g.const([1], np.int64))
    size = g.op("Cast", g.op("Gather", g.op("Shape", ordered), g.const(0, np.int64)), to=TensorProto.INT32)
    ranks = g.op("Range", g.const(0, np.int32), size, g.const(1, np.int32))
    unlabelled = g.op("ConstantOfShape", geometry["plane"], value=numpy_helper.from_array(np.array([-1], np.int32)))
    index_image = g.op("ScatterND", unlabelled, column, ranks)
    wp = geometry["wp"]
    forward = [g.op("Add", g.op("Mul", wp, g.const([dy], np.int64)), g.const([dx], np.int64)) for dy, dx in _FORWARD]
    flat = g.const([-1], np.int64)
    partners = g.take(index_image, g.op("Reshape", g.op("Add", column, g.op("Concat", *forward, axis=0)), flat))
    sources = g.op(
        "Reshape",
        g.op("Expand", g.op("Unsqueeze", ranks, g.const([1], np.int64)), g.const([1, len(_FORWARD)], np.int64)),
        flat,
    )
    touching = g.op("GreaterOrEqual", partners, g.const(0, np.int32))
    first, second = (g.op("Compress", end_, touching, axis=0) for end_ in (sources, partners))

    body = g.child()
    labels = body.name("labels")
    a, b = body.take(labels, first), body.take(labels, second)
    smaller, larger = body.op("Min", a, b), body.op("Max", a, b)
    hooks = body.op("And", body.op("Less", smaller, larger), body.op("Equal", body.take(labels, larger), larger))
    spare = body.op("Where", hooks, larger, size)  # pairs that do not hook write the spare slot past the labels
    extended = body.op("Concat", labels, body.const([_INT32_MAX], np.int32), axis=0)
    hooked = body.op(
        "ScatterElements", extended, spare, body.op("Where", hooks, smaller, body.const(_INT32_MAX, np.int32))
    )
    hooked = body.op("Slice", hooked, body.const([0], np.int64), body.const([-1], np.int64))
    jumped = body.take(hooked, hooked)
    jumped = body.take(jumped, jumped)
    change = body.op("Concat", body.op("Sub", labels, jumped), body.const([0], np.int32), axis=0)
    changed = body.op("Greater", body.reduce("ReduceMax", change, 0), body.const(0, np.int32))
    body_graph = body.graph(
        "hysteresis",
        [
            helper.make_tensor_value_info(body.name("step"), TensorProto.INT64, []),
            helper.make_tensor_value_info(body.name("cond"), TensorProto.BOOL, []),
            helper.make_tensor_value_info(labels, TensorProto.INT32, None),
        ],
        [(changed, TensorProto.BOOL), (jumped, TensorProto.INT32)],
    )
    final = g.name("components")
    g.nodes.append(helper.make_node("Loop", ["", g.const(True, np.bool_), ranks], [final], body=body_graph))
    kept = g.op("Less", final, g.op("Cast", strong_count, to=TensorProto.INT32))
    values = g.op("Where", kept, g.const(255, np.uint8), g.const(0, np.uint8))
    blank = g.op("ConstantOfShape", geometry["plane"], value=numpy_helper.from_array(np.array([0], np.uint8)))
    return g.op("ScatterND", blank, column, values)


def _parameter(g: _Builder, name: str, index: str) -> str:
    """Image ``index``'s value of an [N, 1] input; a one-row default serves every image of the batch."""
    last = g.op("Sub", g.op("Gather", g.op("Shape", name), g.const(0, np.int64)), g.const(1, np.int64))
    return g.op("Gather", name, g.op("Min", index, last), axis=0)  # [1]


def _pixels(g: _Builder, image: str, gray: str) -> str:
    """float32 [C, H, W]: the three BGR planes, or (GRAY) cvtColor's Q15 gray, rounded half up, as one."""
    as_gray = g.child()
    weights = as_gray.const(np.reshape(_GRAY_Q15, (3, 1)) / 2.0**15)
    weighted = as_gray.op("MatMul", as_gray.op("Cast", image, to=TensorProto.FLOAT), weights)
    gray_plane = as_gray.op(
        "Transpose", as_gray.op("Floor", as_gray.op("Add", weighted, as_gray.const(0.5))), perm=[2, 0, 1]
    )
    colour = g.child()
    planes = colour.op("Cast", colour.op("Transpose", image, perm=[2, 0, 1]), to=TensorProto.FLOAT)
    return g.branch(gray, as_gray, [(gray_plane, TensorProto.FLOAT)], colour, [(planes, TensorProto.FLOAT)])[0]


def _blurred(g: _Builder, planes: str, blur: str) -> str:
    """GaussianBlur(ksize, sigma 0, BORDER_REPLICATE) per plane in cv2's Q8 fixed point, if BLUR > 1."""
    half = MAX_BLUR // 2
    table = np.zeros((half + 1, MAX_BLUR), np.float32)
    for reach in range(half + 1):
        table[reach, half - reach : half + reach + 1] = gaussian_kernel_q8(2 * reach + 1) / 256.0
    smooth = g.child()
    size = smooth.op("Cast", smooth.op("Min", blur, smooth.const([MAX_BLUR], np.int32)), to=TensorProto.INT64)
    radius = smooth.op("Div", size, smooth.const([2], np.int64))
    row = smooth.op("Gather", smooth.const(table), radius)  # [1, MAX_BLUR]
    start = smooth.op("Sub", smooth.const([half], np.int64), radius)
    end = smooth.op("Add", smooth.const([half + 1], np.int64), radius)
    taps = smooth.op("Slice", row, start, end, smooth.const([1], np.int64))
    zero = smooth.const([0], np.int64)
    pads = smooth.op("Concat", zero, zero, radius, radius, zero, zero, radius, radius, axis=0)
    padded = smooth.op("Pad", smooth.op("Unsqueeze", planes, smooth.const([1], np.int64)), pads, mode="edge")
    rows = smooth.op("Conv", padded, smooth.op("Reshape", taps, smooth.const([1, 1, 1, -1], np.int64)))
    columns = smooth.op(
        "Conv", rows, smooth.op("Reshape", taps, smooth.const([1, 1, -1, 1], np.int64)), smooth.const([0.5])
    )
    result = smooth.op("Squeeze", smooth.op("Floor", columns), smooth.const([1], np.int64))
    unchanged = g.child()
    same = unchanged.op("Identity", planes)
    cond = g.op("Greater", blur, g.const([1], np.int32))
    return g.branch(cond, smooth, [(result, TensorProto.FLOAT)], unchanged, [(same, TensorProto.FLOAT)])[0]


def _geometry(g: _Builder, padded: str) -> dict[str, str]:
    """Sizes of the padded [C, Hp, Wp] image and masks of its interior rows [Hp, 1] and columns [1, Wp]."""
    shape = g.op("Shape", padded)
    hp, wp = (g.op("Slice", shape, g.const([axis], np.int64), g.const([axis + 1], np.int64)) for axis in (1, 2))
    one = numpy_helper.from_array(np.array([1.0], np.float32))
    border = g.const([_PAD, _PAD], np.int64)
    masks = [
        g.op("Pad", g.op("ConstantOfShape", g.op("Sub", size, g.const([2 * _PAD], np.int64)), value=one), border)
        for size in (hp, wp)
    ]
    return {
        "wp": wp,
        "plane": g.op("Mul", hp, wp),
        "shape": g.op("Concat", hp, wp, axis=0),
        "rows": g.op("Unsqueeze", masks[0], g.const([1], np.int64)),
        "cols": g.op("Unsqueeze", masks[1], g.const([0], np.int64)),
    }


def _thresholds(g: _Builder, low: str, high: str, aperture: str) -> dict[bool, tuple[str, str]]:
    """cv2.Canny's integer thresholds as float64, per magnitude (False: L1, True: L2 squared), clamped at 0.

    cv2 swaps LOW > HIGH, divides by 16 for aperture 7, in L2 mode caps at 32767 and squares positive values,
    then floors. Clamping at 0 changes nothing (a zero magnitude never survives suppression) and keeps the
    zero border out of the candidates.
    """
    low, high = g.op("Min", low, high), g.op("Max", low, high)
    scale = g.op(
        "Where",
        g.op("Greater", aperture, g.const([5], np.int32)),
        g.const([1 / 16], np.float64),
        g.const([1.0], np.float64),
    )
    result: dict[bool, tuple[str, str]] = {}
    for l2 in (False, True):
        pair = []
        for value in (low, high):
            scaled = g.op("Mul", g.op("Cast", value, to=TensorProto.DOUBLE), scale)
            if l2:
                capped = g.op("Min", scaled, g.const([32767.0], np.float64))
                scaled = g.op(
                    "Where", g.op("Greater", capped, g.const([0.0], np.float64)), g.op("Mul", capped, capped), capped
                )
            pair.append(g.op("Max", g.op("Floor", scaled), g.const([0.0], np.float64)))
        result[l2] = (pair[0], pair[1])
    return result


def _image_edges(g: _Builder, index: str) -> str:
    """Image ``index`` of the batch with its own parameters -> uint8 [H, W] 0/255."""
    image = g.op("Gather", IMAGE, index, axis=0)  # [H, W, 3]
    low, high, aperture, l2, gray, blur = (_parameter(g, name, index) for name in OPTIONAL_INPUTS)
    planes = _blurred(g, _pixels(g, image, gray), blur)
    padded = g.op("Pad", planes, g.const([0, _PAD, _PAD, 0, _PAD, _PAD], np.int64), mode="edge")
    geometry = _geometry(g, padded)
    flat = g.op("Reshape", padded, g.const([-1], np.int64))

    def sobel(size: int) -> tuple[_Builder, list[tuple[str, int]]]:
        branch = g.child()
        dx, dy, first = _sobel(branch, flat, geometry["wp"], size)
        return branch, [(dx, TensorProto.FLOAT), (dy, TensorProto.FLOAT), (first, TensorProto.INT64)]

    outer = g.child()
    dx, dy, first = outer.branch(outer.op("Greater", aperture, outer.const([5], np.int32)), *sobel(7), *sobel(5))
    gradients = g.branch(
        g.op("Less", aperture, g.const([4], np.int32)),
        *sobel(3),
        outer,
        [(dx, TensorProto.FLOAT), (dy, TensorProto.FLOAT), (first, TensorProto.INT64)],
    )
    thresholds = _thresholds(g, low, high, aperture)

    def suppression(use_l2: bool) -> tuple[_Builder, list[tuple[str, int]]]:
        branch = g.child()
        dx, dy, first = gradients
        ordered, strong = _candidates(branch, dx, dy, first, geometry, *thresholds[use_l2], l2=use_l2)
        return branch, [(ordered, TensorProto.INT64), (strong, TensorProto.INT64)]

    ordered, strong = g.branch(l2, *suppression(True), *suppression(False))
    edges = g.op("Reshape", _hysteresis(g, ordered, strong, geometry), geometry["shape"])
    return g.op(
        "Slice", edges, g.const([_PAD, _PAD], np.int64), g.const([-_PAD, -_PAD], np.int64), g.const([0, 1], np.int64)
    )


def build_edges_model(opset: int = 17) -> onnx.ModelProto:
    """``IMAGE`` uint8 [N, H, W, 3] BGR and optional [N, 1] parameters -> ``EDGES`` uint8 [N, H, W], 0/255.

    The parameters are graph inputs backed by same-named initializers, so a caller may leave any out and get
    cv2.Canny's default (a [1, 1] default serves the whole batch). A Loop runs the batch one image at a time so
    each image may carry its own parameters; N is normally 1. Out-of-range values are clamped, never an error:
    APERTURE_SIZE to 3/5/7, BLUR to at most MAX_BLUR (an even size acts as the next odd one, <= 1 is none).
    H, W >= 1.
    """
    g = _Builder(opset)
    body = g.child()
    index = body.name("index")
    edges = _image_edges(body, index)
    body_graph = body.graph(
        "image",
        [
            helper.make_tensor_value_info(index, TensorProto.INT64, []),
            helper.make_tensor_value_info(body.name("cond"), TensorProto.BOOL, []),
        ],
        [(body.const(True, np.bool_), TensorProto.BOOL), (edges, TensorProto.UINT8)],
    )
    batch = g.op("Gather", g.op("Shape", IMAGE), g.const(0, np.int64))
    g.nodes.append(
        helper.make_node(
            "Loop",
            [
                batch,
                "",
            ],
            [EDGE_MAP],
            body=body_graph,
        )
    )

    defaults = {
        LOW: np.array([[DEFAULT_LOW]], np.float32),
        HIGH: np.array([[DEFAULT_HIGH]], np.float32),
        APERTURE_SIZE: np.array([[DEFAULT_APERTURE]], np.int32),
        L2_GRADIENT: np.array([[False]]),
        GRAY: np.array([[False]]),
        BLUR: np.array([[0]], np.int32),
    }
    inputs = [helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, ["N", "H", "W", 3])]
    for name, value in defaults.items():
        inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), ["N", 1]))
    graph = helper.make_graph(
        g.nodes,
        "edges",
        inputs,
        [helper.make_tensor_value_info(EDGE_MAP, TensorProto.UINT8, ["N", "H", "W"])],
        [numpy_helper.from_array(value, name) for name, value in defaults.items()] + g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="export.edges")
    model.doc_string = (
        f"cv2.Canny(image, LOW={DEFAULT_LOW:g}, HIGH={DEFAULT_HIGH:g}) on BGR by default; optional "
        "APERTURE_SIZE, L2_GRADIENT, GRAY, BLUR"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_edges(
    image_bgr: np.ndarray,
    low: float,
    high: float,
    aperture_size: int = DEFAULT_APERTURE,
    l2_gradient: bool = False,
    gray: bool = False,
    blur: int = 0,
) -> np.ndarray:
    """The graph's function written with OpenCV: ``uint8 [H, W, 3]`` BGR -> ``uint8 [H, W]``, 0/255.

    With the defaults this is exactly ``cv2.Canny(image_bgr, low, high)``. ``gray`` converts with cvtColor first,
    ``blur`` (odd, 0 for none) applies GaussianBlur with sigma 0 and a replicated border, as the graph does.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3] BGR, got {image_bgr.dtype} {list(image_bgr.shape)}")
    if aperture_size not in APERTURES:
        raise ValueError(f"aperture_size must be one of {APERTURES}, got {aperture_size}")
    if blur < 0 or blur > MAX_BLUR or (blur > 0 and blur % 2 == 0):
        raise ValueError(f"blur must be 0 or an odd size up to {MAX_BLUR}, got {blur}")
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if gray else image_bgr
    if blur > 1:
        image = cv2.GaussianBlur(image, (blur, blur), 0, borderType=cv2.BORDER_REPLICATE)
    return cv2.Canny(image, low, high, apertureSize=aperture_size, L2gradient=l2_gradient)


def edge_f1(pred: np.ndarray, ref: np.ndarray, tolerance: int = 1) -> float:
    """F1 of edge pixels where a hit may be ``tolerance`` pixels off (Chebyshev): the usual edge-map score.

    A predicted edge pixel is correct if a reference edge lies within the tolerance, and a reference edge
    pixel is found if a predicted one does. Two empty maps agree (1.0).
    """
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    pred_on, ref_on = pred > 0, ref > 0
    if not pred_on.any() and not ref_on.any():
        return 1.0
    window = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    near_pred = cv2.dilate(pred_on.astype(np.uint8), window) > 0
    near_ref = cv2.dilate(ref_on.astype(np.uint8), window) > 0
    precision = (pred_on & near_ref).sum() / max(int(pred_on.sum()), 1)
    recall = (ref_on & near_pred).sum() / max(int(ref_on.sum()), 1)
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))
