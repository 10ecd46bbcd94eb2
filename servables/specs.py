"""The parameters people tune, as data: the preprocessing a classifier expects and the network's batching."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreprocessSpec:
    """The parameters people tune: shorter-side resize target, crop size, RGB mean and std."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop ({self.crop}) must be positive and at most resize ({self.resize})")


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
