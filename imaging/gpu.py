"""JPEG decode on an NVIDIA GPU, for the decode step's GPU instances: nvImageCodec decodes, CuPy finishes.

nvImageCodec (NVIDIA's codec library, on PyPI as ``nvidia-nvimgcodec-cu12``) decodes every JPEG that Triton's
dynamic batcher hands over in one batched call with nvJPEG, on the A100/H100 hardware JPEG decoder where there
is one, straight to BGR. CuPy then reduces and turns the pixels on the device, and they leave through DLPack, so
the next step reads them without a host round trip. Both together add about 140 MB of wheels to the Triton image,
where torch and torchvision would add about 3 GB (deploy/ecs/README.md, "GPU decode").

The result keeps the CPU path's contract (``imaging.decode``): ``uint8 [1, H, W, 3]`` BGR, upright by our own
reading of the EXIF orientation (nvImageCodec's own is switched off), at the JPEG scale the model needs: libjpeg's
scaled decode size, each pixel the mean of its block, the image edge-padded to whole blocks as a JPEG encoder pads
its last MCU. The header rules ran on the CPU before (``imaging.read_header`` and ``decodable``: cheap).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from imaging.decode import jpeg_scale, upright
from imaging.header import Header


class GpuUnavailable(RuntimeError):
    """A GPU instance that cannot decode on its GPU (a package missing, no CUDA): it decodes on the CPU."""


class GpuDecoder:
    def __init__(self, decoder: Any, params: Any, xp: ModuleType) -> None:
        self.decoder = decoder  # an nvimgcodec.Decoder
        self.params = params  # its DecodeParams: BGR, orientation left to us
        self.xp = xp  # CuPy on a GPU; numpy where nvImageCodec decodes on the CPU

    @classmethod
    def for_instance(cls, kind: str, device_id: int) -> GpuDecoder | None:
        """A decoder when Triton placed the instance on a GPU (kind ``GPU``), None elsewhere: the configuration
        (``instance_group``) selects the GPU path. Raises ``GpuUnavailable`` when a GPU instance cannot use it."""
        if kind != "GPU":
            return None
        try:
            import cupy
            from nvidia import nvimgcodec
        except ImportError as exc:
            raise GpuUnavailable(f"its packages are not all installed in this Python ({exc})") from None
        try:
            cupy.cuda.Device(device_id).use()
            decoder = cls(nvimgcodec.Decoder(device_id=device_id), _params(nvimgcodec), cupy)
            decoder.finish(cupy.zeros((16, 16, 3), cupy.uint8), orientation=6, scale=2)  # CuPy compiles its kernels
        except Exception as exc:  # CUDA, NVRTC or nvJPEG missing or failing: said once, at load
            raise GpuUnavailable(f"{type(exc).__name__}: {exc}") from None
        return decoder

    @classmethod
    def with_cpu_backend(cls) -> GpuDecoder:
        """The same code on nvImageCodec's libjpeg-turbo backend and numpy: how the contract is checked where
        there is no GPU (``make verify-images``, in the Triton image's packages)."""
        import numpy
        from nvidia import nvimgcodec

        cpu = nvimgcodec.Decoder(
            device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY, backends=[nvimgcodec.Backend(nvimgcodec.CPU_ONLY)]
        )
        return cls(cpu, _params(nvimgcodec), numpy)

    def decode(self, files: list[tuple[bytes, Header]], min_side: int) -> list[Any | None]:
        """An array per file (it has ``__dlpack__``), or None where nvImageCodec could not decode it (CMYK,
        arithmetic coding...): the caller decodes those on the CPU."""
        images = self.decoder.decode([data for data, _ in files], params=self.params)
        finished = [
            None if image is None else self._finish(image, header, min_side)
            for image, (_, header) in zip(images, files, strict=True)
        ]
        if hasattr(self.xp, "cuda"):  # the next step reads the pixels from another stream
            self.xp.cuda.get_current_stream().synchronize()
        return finished

    def _finish(self, image: Any, header: Header, min_side: int) -> Any:
        return self.finish(self.xp.asarray(image), header.orientation, jpeg_scale(header, min_side))

    def finish(self, image: Any, orientation: int, scale: int) -> Any:
        """``[H, W, 3]`` BGR as decoded -> ``[1, h, w, 3]``, reduced ``scale`` times and upright."""
        xp = self.xp
        if scale > 1:
            height, width = image.shape[:2]
            padded = xp.pad(image, ((0, -height % scale), (0, -width % scale), (0, 0)), mode="edge")
            blocks = padded.reshape(padded.shape[0] // scale, scale, padded.shape[1] // scale, scale, 3)
            image = xp.rint(blocks.mean(axis=(1, 3), dtype=xp.float32)).astype(xp.uint8)
        return upright(image, orientation, xp)[None]


def _params(nvimgcodec: ModuleType) -> Any:
    return nvimgcodec.DecodeParams(apply_exif_orientation=False, sample_format=nvimgcodec.I_BGR)
