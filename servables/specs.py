"""The parameters people tune, as data: the preprocessing a classifier expects and the network's batching."""

from __future__ import annotations

from dataclasses import dataclass

INTERPOLATIONS = ("linear", "cubic")  # cv2.INTER_LINEAR, cv2.INTER_CUBIC (torchvision's BILINEAR, BICUBIC)


@dataclass(frozen=True)
class PreprocessSpec:
    """The parameters people tune: shorter-side resize target and its interpolation, crop size, RGB mean and std."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop ({self.crop}) must be positive and at most resize ({self.resize})")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r}: choose {' or '.join(INTERPOLATIONS)}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise ValueError(f"mean and std need three values each, std positive: {self.mean}, {self.std}")


@dataclass(frozen=True)
class Batching:
    """Dynamic-batching settings of the ResNet: what the benchmark's sweep varies."""

    max_batch_size: int = 128
    max_queue_delay_us: int = 2000
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 512
    queue_timeout_us: int = 5_000_000
    instances: int = 1
    enabled: bool = True
