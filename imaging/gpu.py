"""JPEG decode on an NVIDIA GPU (nvJPEG through torchvision), for the decode step's GPU instances.

Every JPEG that Triton's dynamic batcher hands over together is decoded in one ``decode_jpeg`` call; the pixels
stay on the device and leave as DLPack capsules, so the next step reads them without a host round trip. The
header rules ran on the CPU before (``imaging.read_header``: cheap), and the result matches the CPU path's
contract: ``uint8 [1, H, W, 3]`` BGR, upright, at the JPEG scale the model needs (an area average over the same
factor libjpeg's scaled decode would use).
"""

from __future__ import annotations

from typing import Any

from imaging.decode import UPRIGHT, jpeg_scale
from imaging.header import Header


class GpuDecoder:
    def __init__(self, device: Any) -> None:
        import torch
        import torchvision.io

        self.torch = torch
        self.io = torchvision.io
        self.device = device

    @classmethod
    def for_instance(cls, kind: str, device_id: int) -> GpuDecoder | None:
        """A decoder when Triton placed the instance on a GPU (kind ``GPU``) and torch can reach CUDA, else None:
        the configuration (``instance_group``) is what selects the GPU path."""
        if kind != "GPU":
            return None
        try:
            import torch
        except ImportError:
            return None
        if not torch.cuda.is_available():
            return None
        return cls(torch.device("cuda", device_id))

    def decode(self, files: list[tuple[bytes, Header]], min_side: int) -> list[Any | None]:
        """A DLPack capsule per file, or None where nvJPEG could not decode it (the caller decodes it on the CPU)."""
        torch = self.torch
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data, _ in files]
        try:
            images: list[Any | None] = list(self.io.decode_jpeg(encoded, self.io.ImageReadMode.RGB, device=self.device))
        except RuntimeError:  # one file nvJPEG refuses fails the whole call: retry them one by one
            images = [self._one(tensor) for tensor in encoded]
        return [
            None if image is None else torch.utils.dlpack.to_dlpack(self._finish(image, header, min_side))
            for image, (_, header) in zip(images, files, strict=True)
        ]

    def _one(self, tensor: Any) -> Any | None:
        try:
            return self.io.decode_jpeg(tensor, self.io.ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            return None

    def _finish(self, rgb: Any, header: Header, min_side: int) -> Any:
        """CHW RGB as decoded -> [1, H, W, 3] BGR, upright, reduced like the CPU path."""
        torch = self.torch
        scale = jpeg_scale(header, min_side)
        if scale > 1:
            pooled = torch.nn.functional.avg_pool2d(rgb[None].float(), scale, ceil_mode=True)[0]
            rgb = pooled.round_().to(torch.uint8)
        transpose, mirror, turns = UPRIGHT.get(header.orientation, UPRIGHT[1])
        if transpose:
            rgb = rgb.transpose(1, 2)
        if mirror:
            rgb = rgb.flip(2)
        rgb = torch.rot90(rgb, turns, dims=(1, 2))
        return rgb.flip(0).permute(1, 2, 0).contiguous()[None]
