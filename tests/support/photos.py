"""Real photographs that ship with scikit-image, as BGR uint8 (what cv2.imdecode returns)."""

from __future__ import annotations

import cv2
import numpy as np


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def load_photos() -> dict[str, np.ndarray]:
    """Square, landscape, portrait, a deep field and grayscale content."""
    import skimage.data as data

    astronaut = _bgr(data.astronaut())
    return {
        "astronaut": astronaut,  # square
        "coffee": _bgr(data.coffee()),  # landscape
        "chelsea": _bgr(data.chelsea()),  # landscape
        "rocket_portrait": np.ascontiguousarray(np.rot90(_bgr(data.rocket()))),  # portrait
        "hubble": _bgr(data.hubble_deep_field()),
        "camera_gray": cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR),  # grayscale content
    }
