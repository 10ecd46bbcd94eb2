"""Uploaded image files: their header read without decoding, and their decode at the scale a model needs.

One set of rules for everyone who receives an image: the gateway checks the header before it forwards the
bytes, and the decode step inside Triton checks it again (gRPC clients reach Triton directly) and decodes.
"""

from imaging.decode import decode, jpeg_scale
from imaging.errors import ImageError, Problem
from imaging.header import SUPPORTED_FORMATS, Header, Limits, read_header

__all__ = ["SUPPORTED_FORMATS", "Header", "ImageError", "Limits", "Problem", "decode", "jpeg_scale", "read_header"]
