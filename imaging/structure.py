"""Bounded walks over a file's structure, before Pillow, libjpeg or libpng see it.

Pillow walks JPEG markers and PNG chunks in Python a byte or a chunk at a time, and libjpeg/libpng spend work on
whatever the file lists (every progressive scan is a pass over every block; every compressed text chunk is
inflated, even after the image data). A 10 MB body of empty markers or chunks took seconds in Pillow, a PNG with
text chunks after its pixels 50 s in libpng. These walks are linear, capped in steps, and done with C-speed
searches where a run of bytes is skipped: an abusive structure is refused (``image_too_complex``) after a fixed
amount of work, and PNG metadata that only costs time (text, ICC profiles) is dropped before decoding.
"""

from __future__ import annotations

import re
import struct

from imaging.errors import ImageError, Problem

# Before the first scan a camera JPEG has 10-30 markers (an ICC profile takes up to ~20 APP2 segments); Pillow
# reads each in Python, and each fill or junk byte one at a time, so both are bounded.
MAX_JPEG_HEAD_MARKERS = 1024
MAX_JPEG_HEAD_SKIPPED_BYTES = 4096
# Progressive encoders write about 10 scans (libjpeg's default script), a few dozen at most; each costs libjpeg a
# pass over every block of the image. Tables between scans count as markers.
MAX_JPEG_SCANS = 64
MAX_JPEG_MARKERS = 4 * MAX_JPEG_HEAD_MARKERS
# A PNG has a dozen chunks before its image data; libpng writes 8 KB data chunks, so a 10 MB PNG has ~1,300.
MAX_PNG_HEAD_CHUNKS = 256
MAX_PNG_CHUNKS = 20_000
# Chunks that hold only metadata we never use and that libpng/Pillow inflate: dropped before decoding.
_PNG_DROPPED = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Real TIFFs have 10-100 entries in a directory; Pillow loads each in Python.
MAX_TIFF_ENTRIES = 1024

_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and restart markers: no length field
_FILL = re.compile(rb"\xff+")
# In entropy-coded data, 0xFF is followed by a stuffed 0x00 or a restart marker; anything else ends the scan.
# No "+" after the first byte: a leading literal lets re skip ahead at C speed (2 ms for a 3 MB scan, not 46); a run
# of fill bytes still matches at its last 0xFF, where the marker walk picks it up.
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def too_complex(message: str) -> ImageError:
    return ImageError(Problem.TOO_COMPLEX, message)


def jpeg_scans(data: bytes, first_scan_only: bool) -> int:
    """How many scans the first picture has (1 at most with ``first_scan_only``: the header's walk), refused past
    the caps. Stops quietly where the file is truncated: the decode says so."""
    pos, markers, skipped, scans = 2, 0, 0, 0
    head = True  # before the first scan: Pillow's walk, one Python step per marker and per skipped byte
    while pos < len(data):
        markers += 1
        if markers > (MAX_JPEG_HEAD_MARKERS if head else MAX_JPEG_MARKERS):
            where = "before the first scan" if head else "in the first picture"
            raise too_complex(f"the JPEG has over {markers - 1} markers {where}")
        if data[pos] != 0xFF:  # junk between segments: libjpeg and Pillow skip it
            found = data.find(b"\xff", pos)
            end = found if found >= 0 else len(data)
            skipped, pos = skipped + end - pos, end
        else:
            run = _FILL.match(data, pos)
            assert run is not None  # data[pos] is 0xFF
            skipped, pos = skipped + run.end() - pos - 1, run.end()
            if pos >= len(data):
                break
            marker = data[pos]
            pos += 1
            if marker == _EOI:
                break
            if marker in _STANDALONE or marker == 0x00:
                continue
            if pos + 2 > len(data):
                break
            pos += struct.unpack_from(">H", data, pos)[0]
            if marker == _SOS:
                scans += 1
                if first_scan_only:
                    break
                if scans > MAX_JPEG_SCANS:
                    raise too_complex(f"the JPEG has over {MAX_JPEG_SCANS} scans")
                head = False
                end_of_scan = _END_OF_SCAN.search(data, pos)
                if end_of_scan is None:
                    break
                pos = end_of_scan.start()
        if head and skipped > MAX_JPEG_HEAD_SKIPPED_BYTES:
            raise too_complex(f"the JPEG has over {MAX_JPEG_HEAD_SKIPPED_BYTES} bytes of padding between markers")
    return scans


def png_chunks(data: bytes, up_to_image_data: bool) -> list[tuple[bytes, int, int]]:
    """``(type, start, end)`` of each complete chunk, in order, to the first image data chunk (the header's walk)
    or to IEND; refused past the caps or when IHDR is not first."""
    chunks: list[tuple[bytes, int, int]] = []
    limit = MAX_PNG_HEAD_CHUNKS if up_to_image_data else MAX_PNG_CHUNKS
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if not chunks and kind != b"IHDR":
            raise ImageError(Problem.CORRUPT, f"the PNG's first chunk is {kind!r}, not IHDR")
        if len(chunks) == limit:
            where = "before its image data" if up_to_image_data else "in all"
            raise too_complex(f"the PNG has over {limit} chunks {where}")
        if end > len(data):
            break
        chunks.append((kind, pos, end))
        if kind == b"IEND" or (up_to_image_data and kind == b"IDAT"):
            break
        pos = end
    return chunks


def png_without_metadata(data: bytes, up_to_image_data: bool) -> bytes:
    """The PNG without its text and ICC chunks (inflated by libpng and Pillow, used by no one here); the same
    bytes when it has none. The header's walk keeps everything from the first image data chunk on as it is."""
    chunks = png_chunks(data, up_to_image_data)
    if not any(kind in _PNG_DROPPED for kind, _, _ in chunks):
        return data
    tail = chunks[-1][2] if chunks else len(_PNG_SIGNATURE)
    kept = [data[start:end] for kind, start, end in chunks if kind not in _PNG_DROPPED]
    return b"".join([_PNG_SIGNATURE, *kept, data[tail:]])


def tiff_is_multipage(data: bytes) -> bool:
    """Whether the TIFF has more than one directory, read from the first one alone: a long chain of directories
    is never walked. Refused when the first directory has too many entries; a broken one is left to Pillow."""
    if len(data) < 16:
        return False
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(f"{order}H", data, 2)[0] == 43  # BigTIFF: 8-byte counts and offsets
    count_format, entry_size, offset_format = ("Q", 20, "Q") if big else ("H", 12, "I")
    first = struct.unpack_from(f"{order}{offset_format}", data, 8 if big else 4)[0]
    count_size = struct.calcsize(count_format)
    if first + count_size > len(data):
        return False  # Pillow reports the broken header
    entries = struct.unpack_from(f"{order}{count_format}", data, first)[0]
    if entries > MAX_TIFF_ENTRIES:
        raise too_complex(f"the TIFF's first directory has {entries} entries (at most {MAX_TIFF_ENTRIES})")
    next_at = first + count_size + entries * entry_size
    if next_at + struct.calcsize(offset_format) > len(data):
        return False
    return struct.unpack_from(f"{order}{offset_format}", data, next_at)[0] != 0
