"""The reduced-scale decode's fidelity, measured through the test model: what the network sees and what it answers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from export.preprocess import reference_preprocess
from imaging import Limits, decode
from servables import names
from servables.specs import PreprocessSpec


def _jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def test_reduced_scale_decode_fidelity(photos: dict[str, np.ndarray], test_repository: Path) -> None:
    """The network input from the reduced-scale decode against a full decode with an anti-aliased downscale
    (INTER_AREA: what ImageNet weights were trained on), beside the old path (full decode, INTER_LINEAR)."""
    levels = np.asarray(PreprocessSpec().std, np.float32)[:, None, None] * 255
    model = test_repository / "resnet18" / "1" / "model.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def top5(tensor: np.ndarray) -> set[int]:
        probabilities = session.run([names.PROBABILITIES], {names.INPUT: tensor[None]})[0][0]
        return set(np.argsort(-probabilities)[:5].tolist())

    rows = []
    for height, width in [(480, 640), (1200, 1600), (3024, 4032)]:
        for name in ("astronaut", "coffee", "chelsea", "rocket_portrait"):
            source = photos[name]
            size = (width, height) if source.shape[1] >= source.shape[0] else (height, width)
            data = _jpeg(cv2.resize(source, size, interpolation=cv2.INTER_CUBIC))
            full = decode(data, Limits())
            reference = reference_preprocess(full, interpolation=cv2.INTER_AREA)
            reduced = np.abs(reference_preprocess(decode(data, Limits(), min_side=256)) - reference) * levels
            linear = np.abs(reference_preprocess(full) - reference) * levels
            agree = len(top5(reference_preprocess(decode(data, Limits(), min_side=256))) & top5(reference))
            rows.append((f"{width}x{height}", name, reduced.mean(), reduced.max(), linear.mean(), linear.max(), agree))
    print("\nsize, photo, reduced decode mean/max, full+INTER_LINEAR mean/max (uint8 levels vs INTER_AREA), top-5")
    for row in rows:
        print("  {:<10} {:<16} {:5.2f} {:5.1f}   {:5.2f} {:5.1f}   {}/5".format(*row))
    for size, _, reduced_mean, _, linear_mean, _, agree in rows:
        assert reduced_mean <= 1.6 and agree >= 4, size
        if size == "4032x3024":  # a 12x downscale: the scaled DCT averages, INTER_LINEAR aliases
            assert reduced_mean < linear_mean
