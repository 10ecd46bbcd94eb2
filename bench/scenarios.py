"""What each scenario sends: ``bench.loadgen`` sends, one request per call, raising ``RequestFailed`` on failure.

REST scenarios share one ``HttpClients`` per scenario (HTTP/1.1 keep-alive, a connection per concurrent client;
past ``CLIENTS_PER_ADDRESS`` of them, from several loopback addresses, as that many clients would come from several
hosts: the gateway takes at most 128 connections from one address, ``GATEWAY_MAX_CONNECTIONS_PER_CLIENT``); gRPC
scenarios one ``tritonclient.grpc.aio`` channel, as the gateway itself holds one.
aiohttp rather than httpx because the load generator shares the machine's cores with the servers: measured
here, httpx's client spent about 1 ms of CPU per request at concurrency 1 and 3.5 ms at 16 (its connection
pool scales badly), aiohttp 0.2 ms, so with httpx a CRUD run measures the client.

gRPC clients send the file's bytes (``IMAGE``, ``uint8 [1, nbytes]``), as Triton's encoded-bytes entry points
take them: no client decode, so gateway versus gRPC measures the gateway's own overhead (HTTP, header check,
event loop, JSON). Scenario 3 sends tensors preprocessed once, so it measures the model with as little client
work as possible. The peers get the same bytes: the FastAPI app as the raw body, LitServe as a multipart file.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import math
import random
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

from bench.inputs import RoundRobin, decode
from bench.loadgen import RequestFailed, Send
from export.preprocess import reference_preprocess
from servables import names

TOP_K = 5  # the gateway's default top_k, asked of Triton's classification extension on every path
TIMEOUT_S = 60.0  # generous: a closed loop at high concurrency on a CPU queues for seconds, by design
JPEG = {"content-type": "image/jpeg"}
JSON_TYPE = {"content-type": "application/json"}
# Phone photos are 2-4 MB and edge maps of 12 MP come back whole: allow Triton's own limit, not gRPC's 4 MB.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
]
EDGE_THRESHOLDS = (100.0, 200.0)  # the gateway's defaults for /v1/edges
ITEM = json.dumps(
    {"name": "widget", "tags": ["blue", "small"], "stock": 7, "price": {"amount": 1299, "currency": "EUR"}}
)


# Connections a level opens from one client address. Under the gateway's cap per address (128) with room to spare,
# since requests take the next address in turn and one address may briefly hold more than its share.
CLIENTS_PER_ADDRESS = 64
PER_ADDRESS_CAP = 128  # gateway.settings.Settings.max_connections_per_client's default


class HttpClients:
    """A level's REST clients: one keep-alive connection per concurrent client. Against a loopback server, more
    than ``CLIENTS_PER_ADDRESS`` clients connect from as many loopback addresses as keep each under it (Linux
    answers all of 127.0.0.0/8 on ``lo``) and requests take the addresses in turn. Create inside the running event
    loop; ``async with`` closes every connection."""

    def __init__(self, base_url: str, concurrency: int) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        addresses = _source_addresses(base_url, concurrency)
        per_address = min(concurrency, PER_ADDRESS_CAP) if len(addresses) > 1 else concurrency
        self.sessions = [
            aiohttp.ClientSession(
                base_url,
                connector=aiohttp.TCPConnector(limit=per_address, limit_per_host=per_address, local_addr=address),
                timeout=timeout,
            )
            for address in addresses
        ]
        self._next = itertools.cycle(self.sessions)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """``aiohttp.ClientSession.request`` on the next address's session."""
        return next(self._next).request(method, path, **kwargs)

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for session in self.sessions:
            await session.close()


def _source_addresses(base_url: str, concurrency: int) -> list[tuple[str, int] | None]:
    """Where the clients connect from: the system's choice (None) for one address's worth or a remote server,
    else ``127.0.0.1``, ``127.0.0.2``, ... enough of them."""
    count = math.ceil(concurrency / CLIENTS_PER_ADDRESS)
    try:
        address = ipaddress.ip_address(urlsplit(base_url).hostname or "")
    except ValueError:  # a name: connect as the system chooses
        return [None]
    if count <= 1 or address.version != 4 or not address.is_loopback:
        return [None]
    return [(f"127.0.0.{index + 1}", 0) for index in range(count)]


def grpc_client(url: str) -> grpcclient.InferenceServerClient:
    """Create inside the running event loop: an aio client belongs to the loop that made it."""
    return grpcclient.InferenceServerClient(url, channel_args=CHANNEL_ARGS)


async def call(client: HttpClients, method: str, path: str, ok: Sequence[int] = (200,), **kwargs: Any) -> bytes:
    """One request, its body read (which frees the connection); a status outside ``ok`` fails it."""
    async with client.request(method, path, **kwargs) as response:
        body = await response.read()
    if response.status not in ok:
        raise RequestFailed(f"http_{response.status}")
    return body


def post_image(client: HttpClients, path: str, jpegs: RoundRobin[bytes]) -> Send:
    """REST scenarios (gateway, naive baseline, FastAPI + ORT): the JPEG as the raw body."""

    async def send() -> None:
        await call(client, "POST", path, data=jpegs(), headers=JPEG)

    return send


def post_multipart(client: HttpClients, path: str, field: str, jpegs: RoundRobin[bytes]) -> Send:
    """LitServe: the JPEG as a multipart file, the way it takes uploads."""

    async def send() -> None:
        form = aiohttp.FormData()
        form.add_field(field, jpegs(), filename="photo.jpg", content_type="image/jpeg")
        await call(client, "POST", path, data=form)

    return send


def _tensor(name: str, array: np.ndarray) -> grpcclient.InferInput:
    datatype = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}[array.dtype]
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def encoded(jpeg: bytes) -> grpcclient.InferInput:
    """The file's bytes as the encoded-bytes entry points take them: ``IMAGE`` ``uint8 [1, nbytes]``."""
    return _tensor(names.IMAGE, np.frombuffer(jpeg, np.uint8)[np.newaxis])


def top_k() -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(names.PROBABILITIES, class_count=TOP_K)]


def infer_encoded(
    client: grpcclient.InferenceServerClient,
    model: str,
    jpegs: Sequence[bytes],
    outputs: list[grpcclient.InferRequestedOutput],
    constants: Sequence[grpcclient.InferInput] = (),
) -> Send:
    """gRPC classify and edges: each JPEG's bytes (serialised once) plus fixed inputs."""
    images = RoundRobin([encoded(jpeg) for jpeg in jpegs])

    async def send() -> None:
        await client.infer(model, [images(), *constants], outputs=outputs, client_timeout=TIMEOUT_S)

    return send


def edge_thresholds() -> list[grpcclient.InferInput]:
    low, high = EDGE_THRESHOLDS
    return [
        _tensor(names.LOW, np.array([[low]], np.float32)),
        _tensor(names.HIGH, np.array([[high]], np.float32)),
    ]


def edges_outputs() -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(names.EDGE_MAP)]


def infer_tensors(client: grpcclient.InferenceServerClient, model: str, tensors: Sequence[np.ndarray]) -> Send:
    """Scenarios 3 and 5: preprocessed ``float32 [1, 3, S, S]`` tensors, serialised once, to the ResNet."""
    inputs = RoundRobin([_tensor(names.INPUT, tensor[np.newaxis]) for tensor in tensors])
    outputs = top_k()

    async def send() -> None:
        await client.infer(model, [inputs()], outputs=outputs, client_timeout=TIMEOUT_S)

    return send


def preprocessed(jpegs: Sequence[bytes]) -> list[np.ndarray]:
    """Each image through the reference OpenCV preprocessing (full decode, ``INTER_LINEAR``): valid ResNet input
    of the export's size, for the scenarios that time the network alone."""
    return [reference_preprocess(decode(jpeg)) for jpeg in jpegs]


async def seed_items(client: HttpClients, count: int) -> list[str]:
    """``count`` items under known ids, for the CRUD scenario to read and replace."""
    ids = [f"bench-{index:05d}" for index in range(count)]
    for item_id in ids:
        await call(client, "PUT", f"/v1/items/{item_id}", (200, 201), data=ITEM, headers=JSON_TYPE)
    return ids


def crud(client: HttpClients, ids: Sequence[str], read_fraction: float, seed: int = 0) -> Send:
    """Scenario 6: ``read_fraction`` GETs of known items, the rest split evenly between PUT (replace) and POST
    (create), chosen by a seeded generator so runs send the same mix."""
    rng = random.Random(seed)
    write_cut = read_fraction + (1 - read_fraction) / 2

    async def send() -> None:
        roll = rng.random()
        if roll < read_fraction:
            await call(client, "GET", f"/v1/items/{rng.choice(ids)}")
        elif roll < write_cut:
            await call(client, "PUT", f"/v1/items/{rng.choice(ids)}", (200, 201), data=ITEM, headers=JSON_TYPE)
        else:
            await call(client, "POST", "/v1/items", (201,), data=ITEM, headers=JSON_TYPE)

    return send
