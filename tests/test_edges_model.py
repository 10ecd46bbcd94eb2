"""The edge-detector graph, run by onnxruntime, against cv2.Canny on real photographs.

The photographs ship inside scikit-image (no network). Each is scored with edge F1 at a one-pixel tolerance,
printed per image; the issue asks for F1 >= 0.9 at the same thresholds.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from skimage import data

from export.edges import DEFAULT_HIGH, DEFAULT_LOW, build_edges_model, edge_f1, reference_edges

MIN_F1 = 0.9
THRESHOLDS = [(DEFAULT_LOW, DEFAULT_HIGH), (50.0, 150.0)]


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.dstack([gray] * 3))


PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": lambda: _bgr(data.astronaut()),
    "coffee": lambda: _bgr(data.coffee()),
    "chelsea": lambda: _bgr(data.chelsea()),
    "rocket": lambda: _bgr(data.rocket()),
    "motorcycle": lambda: _bgr(data.stereo_motorcycle()[0]),
    "hubble_deep_field": lambda: _bgr(data.hubble_deep_field()),
    "immunohistochemistry": lambda: _bgr(data.immunohistochemistry()),
    "coffee_portrait": lambda: cv2.rotate(_bgr(data.coffee()), cv2.ROTATE_90_CLOCKWISE),
    "rocket_portrait_crop": lambda: np.ascontiguousarray(_bgr(data.rocket())[:, 200:440]),
    "camera_gray_as_bgr": lambda: _gray3(data.camera()),
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # LOW/HIGH are initializers on purpose (defaults); ORT warns about that
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _thresholds(low: float, high: float, batch: int = 1) -> dict[str, np.ndarray]:
    return {"LOW": np.full((batch, 1), low, np.float32), "HIGH": np.full((batch, 1), high, np.float32)}


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return _session(build_edges_model())


def _edges(session: ort.InferenceSession, image: np.ndarray, low: float, high: float) -> np.ndarray:
    return session.run(["EDGES"], {"IMAGE": image[None], **_thresholds(low, high)})[0][0]


@pytest.mark.parametrize(("low", "high"), THRESHOLDS, ids=lambda t: f"{t:g}")
@pytest.mark.parametrize("name", PHOTOS)
def test_f1_against_cv2_canny_on_photographs(
    session: ort.InferenceSession, capsys: pytest.CaptureFixture[str], name: str, low: float, high: float
) -> None:
    image = PHOTOS[name]()
    reference = reference_edges(image, low, high)
    f1 = edge_f1(_edges(session, image, low, high), reference)
    with capsys.disabled():  # the score is the report the issue asks for: show it next to the test id
        print(f"F1={f1:.4f} ({image.shape[0]}x{image.shape[1]}) ", end="", flush=True)
    assert reference.sum() > 0.01 * 255 * reference.size  # a real edge map, not a near-empty one
    assert f1 >= MIN_F1


def test_output_is_a_uint8_mask_of_the_image_size(session: ort.InferenceSession) -> None:
    image = PHOTOS["coffee_portrait"]()
    (edges,) = session.run(None, {"IMAGE": image[None], **_thresholds(DEFAULT_LOW, DEFAULT_HIGH)})
    assert edges.dtype == np.uint8
    assert edges.shape == (1, *image.shape[:2])
    assert set(np.unique(edges)) == {0, 255}
    # Bounded hysteresis can only miss pixels cv2.Canny keeps, never add any.
    reference = reference_edges(image, DEFAULT_LOW, DEFAULT_HIGH)
    assert not np.any((edges[0] > 0) & (reference == 0))
    assert (edges[0] > 0).sum() >= 0.95 * (reference > 0).sum()


def test_thresholds_default_when_omitted(session: ort.InferenceSession) -> None:
    image = PHOTOS["chelsea"]()
    omitted = session.run(["EDGES"], {"IMAGE": image[None]})[0][0]
    np.testing.assert_array_equal(omitted, _edges(session, image, DEFAULT_LOW, DEFAULT_HIGH))
    assert (omitted > 0).sum() < (_edges(session, image, 50.0, 150.0) > 0).sum()


def test_swapped_thresholds_are_reordered_as_in_cv2(session: ort.InferenceSession) -> None:
    image = PHOTOS["chelsea"]()
    np.testing.assert_array_equal(_edges(session, image, 150.0, 50.0), _edges(session, image, 50.0, 150.0))
    np.testing.assert_array_equal(reference_edges(image, 150.0, 50.0), reference_edges(image, 50.0, 150.0))


@pytest.mark.parametrize(("ksize", "sigma"), [(5, 0.0), (3, 0.0), (7, 1.4), (9, 2.0)])
def test_bit_exact_once_hysteresis_converges(ksize: int, sigma: float) -> None:
    """Given enough steps the graph is cv2 pixel for pixel: bounded hysteresis is its only approximation."""
    image = PHOTOS["rocket_portrait_crop"]()
    model = build_edges_model(blur_ksize=ksize, blur_sigma=sigma, hysteresis_steps=400)
    (edges,) = _session(model).run(["EDGES"], {"IMAGE": image[None], **_thresholds(40.0, 120.0)})
    reference = reference_edges(image, 40.0, 120.0, blur_ksize=ksize, blur_sigma=sigma)
    assert (reference > 0).sum() > 1000
    np.testing.assert_array_equal(edges[0], reference)


def test_12_megapixels_match_cv2_exactly_up_to_hysteresis() -> None:
    """3000x4000 runs, and all but hysteresis is cv2's at that size too: with no steps the graph returns the
    strong pixels, which is what cv2.Canny returns when LOW == HIGH."""
    image = np.ascontiguousarray(np.tile(PHOTOS["astronaut"](), (6, 8, 1))[:3000, :4000])  # keeps real detail
    edges = _edges(_session(build_edges_model(hysteresis_steps=0)), image, DEFAULT_LOW, DEFAULT_HIGH)
    reference = reference_edges(image, DEFAULT_HIGH, DEFAULT_HIGH)
    assert (reference > 0).sum() > 100_000
    np.testing.assert_array_equal(edges, reference)


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (6, 1), (2, 2), (3, 3), (5, 9)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_tiny_images_match_cv2_exactly(session: ort.InferenceSession, size: tuple[int, int]) -> None:
    image = np.random.default_rng(size[0] * 100 + size[1]).integers(0, 256, (*size, 3), dtype=np.uint8)
    reference = reference_edges(image, 20.0, 60.0)
    np.testing.assert_array_equal(_edges(session, image, 20.0, 60.0), reference)
    if size[0] * size[1] >= 4:
        assert reference.any()  # noise has edges: the match is not two empty maps


def test_a_batch_of_two_uses_each_image_s_thresholds(session: ort.InferenceSession) -> None:
    first, second = PHOTOS["astronaut"](), _gray3(data.camera())  # both 512x512
    batch = np.stack([first, second])
    low, high = np.array([[100.0], [40.0]], np.float32), np.array([[200.0], [120.0]], np.float32)
    edges = session.run(["EDGES"], {"IMAGE": batch, "LOW": low, "HIGH": high})[0]
    assert edges.shape == (2, 512, 512)
    np.testing.assert_array_equal(edges[0], _edges(session, first, 100.0, 200.0))
    np.testing.assert_array_equal(edges[1], _edges(session, second, 40.0, 120.0))
    assert edge_f1(edges[1], reference_edges(second, 40.0, 120.0)) >= MIN_F1


def test_newer_opset_gives_the_same_edges(session: ort.InferenceSession) -> None:
    image = PHOTOS["rocket_portrait_crop"]()
    newer = _session(build_edges_model(opset=21))
    np.testing.assert_array_equal(_edges(newer, image, 50.0, 150.0), _edges(session, image, 50.0, 150.0))


@pytest.mark.parametrize("bad", [{"blur_ksize": 4}, {"blur_ksize": 0}, {"blur_sigma": -1.0}, {"hysteresis_steps": -1}])
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        build_edges_model(**bad)


def test_edge_f1_tolerates_one_pixel_and_no_more() -> None:
    line = np.zeros((20, 20), np.uint8)
    line[10, 2:18] = 255
    shifted = np.roll(line, 1, axis=0)
    assert edge_f1(line, line) == 1.0
    assert edge_f1(shifted, line) == 1.0
    assert edge_f1(shifted, line, tolerance=0) == 0.0
    assert edge_f1(np.roll(line, 2, axis=0), line) == 0.0
    half = line.copy()
    half[10, 10:] = 0  # 8 of 16 pixels: precision 1, recall 1/2 exactly, 9/16 with the one-pixel reach
    assert edge_f1(half, line, tolerance=0) == pytest.approx(2 / 3)
    assert edge_f1(half, line) == pytest.approx(0.72)
    assert edge_f1(np.zeros_like(line), np.zeros_like(line)) == 1.0
    assert edge_f1(np.zeros_like(line), line) == 0.0
