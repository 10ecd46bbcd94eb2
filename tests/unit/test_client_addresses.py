"""The CLI's addresses and output names, as it parses and picks them."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.calls import gateway_url, triton_address
from client.files import edges_outputs


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://host:1/", "http://host:1"),
        ("https://h/api", "https://h/api"),
    ],
)
def test_the_gateway_with_or_without_a_scheme(given: str, url: str) -> None:
    assert gateway_url(given) == url


@pytest.mark.parametrize(
    ("given", "address"),
    [("127.0.0.1:8001", ("127.0.0.1:8001", False)), ("grpc://h:1", ("h:1", False)), ("http://h:1", ("h:1", False)),
     ("grpcs://h:1", ("h:1", True))],
)  # fmt: skip
def test_triton_with_or_without_a_scheme(given: str, address: tuple[str, bool]) -> None:
    assert triton_address(given) == address


@pytest.mark.parametrize("given", ["ftp://h:1", "grpc://h:1/path", "grpc://"])
def test_what_is_not_an_address(given: str) -> None:
    with pytest.raises(ValueError, match="not Triton's gRPC address"):
        triton_address(given)


def test_edge_maps_never_share_a_name() -> None:
    paths = [Path("a/photo.jpg"), Path("a/photo.png"), Path("a/other.jpg"), Path("b/photo.jpg")]
    outputs, renamed = edges_outputs(paths)
    assert outputs == {
        Path("a/photo.jpg"): Path("a/photo.jpg.edges.png"),
        Path("a/photo.png"): Path("a/photo.png.edges.png"),
        Path("a/other.jpg"): Path("a/other.edges.png"),
        Path("b/photo.jpg"): Path("b/photo.edges.png"),
    }
    assert renamed == [[Path("a/photo.jpg"), Path("a/photo.png")]]
    assert len(set(outputs.values())) == len(paths)
