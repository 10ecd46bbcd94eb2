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


def test_gpu_decode_selected_only_for_gpu_instances_that_can_use_it() -> None:
    from imaging.gpu import GpuDecoder, GpuUnavailable

    assert GpuDecoder.for_instance("CPU", 0) is None
    # No CuPy in the project's environment (it is the Triton image's, deploy/ecs/triton-env): a GPU instance says
    # why it decodes on the CPU instead of failing to load.
    with pytest.raises(GpuUnavailable, match="No module named 'cupy'"):
        GpuDecoder.for_instance("GPU", 0)


def test_gpu_decode_finishing_matches_the_cpu_path(photos: dict[str, np.ndarray]) -> None:
    """What the GPU decoder does after nvImageCodec (run here with numpy, on CuPy there): orientation and scale as
    the CPU path does them. The decode itself, nvImageCodec's, is checked by `make verify-images` on its CPU
    backend in the Triton image's packages; on a GPU by the GPU kit."""
    from imaging.gpu import GpuDecoder

    finishing = GpuDecoder(decoder=None, params=None, xp=np)
    for orientation, name in [(1, "coffee"), (6, "chelsea"), (3, "astronaut"), (5, "rocket_portrait"), (8, "coffee")]:
        image = Image.fromarray(cv2.cvtColor(cv2.resize(photos[name], (1403, 1101)), cv2.COLOR_BGR2RGB))
        exif = image.getexif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", exif=exif, quality=92)
        data = buffer.getvalue()
        header = read_header(data, Limits())
        stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        for min_side in (0, 256, 500):
            finished = finishing.finish(stored, header.orientation, jpeg_scale(header, min_side))[0]
            on_cpu = decode(data, Limits(), min_side)
            assert finished.shape == on_cpu.shape, (name, orientation, min_side)
            difference = np.abs(finished.astype(np.int16) - on_cpu).mean()
            assert difference < (0.01 if min_side == 0 else 1.0), (name, orientation, min_side, difference)
