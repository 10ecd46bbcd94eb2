"""Header checks and the decode at the scale the model needs, in-process (the rules Triton's decode step runs)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from imaging import Header, ImageError, Limits, Problem, decode, jpeg_scale, read_header


def _jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@pytest.mark.parametrize(
    ("width", "height", "scale"),
    [(4032, 3024, 8), (2048, 1536, 4), (1024, 768, 2), (600, 400, 1), (2041, 2041, 8), (2040, 4032, 4)],
)
def test_jpeg_scale_keeps_the_shorter_side_at_the_target(width: int, height: int, scale: int) -> None:
    assert jpeg_scale(Header("JPEG", width, height), 256) == scale
    assert -(-min(width, height) // scale) >= 256  # libjpeg rounds scaled sizes up
    assert jpeg_scale(Header("PNG", width, height), 256) == 1  # only JPEG has DCT scaling
    assert jpeg_scale(Header("JPEG", width, height), 0) == 1  # 0: full resolution


def test_reduced_decode_has_the_size_libjpeg_promises(photos: dict[str, np.ndarray]) -> None:
    big = cv2.resize(photos["coffee"], (4032, 3024))
    pixels = decode(_jpeg(big), Limits(), min_side=256)
    assert pixels.shape == (378, 504, 3) and pixels.dtype == np.uint8
    assert decode(_jpeg(big), Limits()).shape == (3024, 4032, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_cv2_imread_applies_it(photos: dict[str, np.ndarray], orientation: int) -> None:
    image = Image.fromarray(cv2.cvtColor(photos["chelsea"][:200, :300], cv2.COLOR_BGR2RGB))
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    data = buffer.getvalue()
    header = read_header(data, Limits())
    pixels = decode(data, Limits())
    assert np.array_equal(pixels, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    assert header.oriented_size == (pixels.shape[1], pixels.shape[0])  # what the gateway reports undecoded


def test_mpo_phone_jpegs_are_read_as_their_first_picture(photos: dict[str, np.ndarray]) -> None:
    first, preview = (
        Image.fromarray(cv2.cvtColor(p, cv2.COLOR_BGR2RGB)) for p in (photos["coffee"], photos["rocket_portrait"])
    )
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[preview])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    header = read_header(data, Limits())
    assert (header.format, header.width, header.height) == ("JPEG", 600, 400)
    assert decode(data, Limits()).shape == (400, 600, 3)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", Problem.EMPTY),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), Problem.CORRUPT),
        (bytes(range(256)) * 4, Problem.UNSUPPORTED),
    ],
)
def test_refusals_name_their_problem(data: bytes, problem: Problem) -> None:
    with pytest.raises(ImageError) as refused:
        decode(data, Limits())
    assert refused.value.problem is problem
    again = ImageError.from_message(f"in ensemble 'classify', [request id: 7] {refused.value}")
    assert again is not None and (again.problem, again.message) == (problem, refused.value.message)


def test_limits_are_the_callers_not_a_process_setting(photos: dict[str, np.ndarray]) -> None:
    data = _jpeg(photos["coffee"])  # 600x400
    with pytest.raises(ImageError) as refused:
        read_header(data, Limits(max_pixels=200_000))
    assert refused.value.problem is Problem.TOO_LARGE and "240,000 pixels" in refused.value.message
    assert read_header(data, Limits()).pixels == 240_000  # the next caller's limit is its own
    with pytest.raises(ImageError, match="at least 500 px"):
        read_header(data, Limits(min_side=500))
    with pytest.raises(ImageError, match="aspect ratios above 1.2"):
        read_header(data, Limits(max_aspect_ratio=1.2))


def test_gpu_decode_selected_only_for_gpu_instances_with_cuda(photos: dict[str, np.ndarray]) -> None:
    """A CPU instance decodes on the CPU; a GPU instance on its device where torch reaches CUDA (what it decodes
    there matches the CPU path), else on the CPU too."""
    import torch
    from torch.utils.dlpack import from_dlpack

    from imaging.gpu import GpuDecoder

    assert GpuDecoder.for_instance("CPU", 0) is None
    decoder = GpuDecoder.for_instance("GPU", 0)
    if not torch.cuda.is_available():
        assert decoder is None
        return
    assert decoder is not None and decoder.device == torch.device("cuda", 0)
    data = _jpeg(photos["coffee"])
    [capsule] = decoder.decode([(data, read_header(data, Limits()))], 0)
    on_device = from_dlpack(capsule)
    assert on_device.device == torch.device("cuda", 0)
    assert np.abs(on_device.cpu().numpy()[0].astype(np.int16) - decode(data, Limits(), 0)).mean() < 1.0


def test_gpu_decode_path_matches_the_cpu_path(photos: dict[str, np.ndarray]) -> None:
    """The GPU decoder's code run on torch's CPU device (nvJPEG's stand-in here is libjpeg-turbo): one batched
    call, orientation and scale as the CPU path does them, BGR out through DLPack."""
    import torch
    from torch.utils.dlpack import from_dlpack

    from imaging.gpu import GpuDecoder

    files = []
    for orientation, name in [(1, "coffee"), (6, "chelsea"), (3, "astronaut"), (5, "rocket_portrait")]:
        image = Image.fromarray(cv2.cvtColor(cv2.resize(photos[name], (1400, 1100)), cv2.COLOR_BGR2RGB))
        exif = image.getexif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", exif=exif, quality=92)
        files.append((buffer.getvalue(), read_header(buffer.getvalue(), Limits())))
    decoder = GpuDecoder(torch.device("cpu"))
    for min_side in (0, 256):
        for (data, _), capsule in zip(files, decoder.decode(files, min_side), strict=True):
            on_device = from_dlpack(capsule).numpy()[0]
            on_cpu = decode(data, Limits(), min_side)
            assert on_device.shape == on_cpu.shape
            difference = np.abs(on_device.astype(np.int16) - on_cpu).mean()
            assert difference < (1.0 if min_side == 0 else 2.5), (min_side, difference)
