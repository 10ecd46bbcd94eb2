"""tritonserve classify|edges PATH...: many images at once, with a progress bar and per-file errors.

Files, folders (recursively) and globs; --concurrency requests in flight; 429/503 retried after
Retry-After. One bad file is reported and the others carry on; the exit code is 1 when any failed, 2 when the
server cannot be reached, 130 when interrupted (Ctrl-C).

Addresses: --url (or $TRITONSERVE_URL) and --triton-url (or $TRITONSERVE_TRITON_URL) both take host:port or
scheme://host:port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from client import output
from client.calls import Attempts, Failure, Gateway, Triton, gateway_url, retrying, triton_address
from client.files import edges_outputs, expand
from client.output import Result

API_KEY_ENV = "TRITONSERVE_API_KEY"
URL_ENV = "TRITONSERVE_URL"
TRITON_URL_ENV = "TRITONSERVE_TRITON_URL"
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tritonserve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or globs")
    common.add_argument(
        "--url",
        type=_gateway_url,
        default=os.environ.get(URL_ENV, "http://127.0.0.1:8080"),
        help=f"the gateway: host:port or http(s)://host:port (default: ${URL_ENV}, else %(default)s)",
    )
    common.add_argument(
        "--api-key", default=os.environ.get(API_KEY_ENV), help=f"the gateway's API key (default: ${API_KEY_ENV})"
    )
    common.add_argument("--concurrency", type=_positive, default=8, help="requests in flight (default: %(default)s)")
    common.add_argument(
        "--retries", type=int, default=5, help="retries per file on 429/503 or a full queue (default: %(default)s)"
    )
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar (also off when not a terminal)")
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser("classify", parents=[common], help="top-k ImageNet classes of each image")
    classify.add_argument("--top-k", type=_positive, default=5, help="classes per image, 1-20 (default: %(default)s)")
    classify.add_argument(
        "--model", help="a classifier of your own (GET /v1/models lists them; default: the gateway's default, classify)"
    )
    classify.add_argument("--format", choices=sorted(output.FORMATS), default="table", help="default: %(default)s")
    classify.add_argument("--output", type=Path, help="write the table/JSON/CSV here instead of stdout")
    classify.add_argument("--grpc", action="store_true", help="call Triton's gRPC port directly, not the gateway")
    classify.add_argument(
        "--triton-url",
        type=_triton_url,
        default=os.environ.get(TRITON_URL_ENV, "127.0.0.1:8001"),
        help=f"Triton's gRPC address with --grpc: host:port or grpc://host:port (default: ${TRITON_URL_ENV}, "
        "else %(default)s)",
    )

    edges = commands.add_parser("edges", parents=[common], help="write <name>.edges.png beside each image")
    edges.add_argument("--low", type=float, default=100.0, help="hysteresis low threshold (default: %(default)s)")
    edges.add_argument("--high", type=float, default=200.0, help="hysteresis high threshold (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "edges" and args.low > args.high:
        parser.error(f"--low ({args.low:g}) must not exceed --high ({args.high:g})")
    return args


def _gateway_url(text: str) -> str:
    try:
        return gateway_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _triton_url(text: str) -> str:
    try:
        triton_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


Work = Callable[[bytes], Awaitable[Any]]
Done = Callable[[Result, Any], None]


class Tally:
    """How many files are finished (their answer, or their failure, known and handled): said on Ctrl-C."""

    done = 0


TALLY = Tally()


async def _one(path: Path, work: Work, retries: int) -> tuple[Result, Any]:
    result = Result(path)
    attempts = Attempts()
    started = time.perf_counter()
    answer = None
    try:
        body = path.read_bytes()
        answer = await retrying(lambda: work(body), retries, attempts)
    except OSError as exc:
        result.error = Failure(f"cannot read: {exc.strerror or exc}", "unreadable").as_dict()
    except Failure as exc:
        result.error = exc.as_dict()
    result.attempts, result.latency_ms = attempts.count, (time.perf_counter() - started) * 1000
    return result, answer


async def run_all(
    paths: list[Path], work: Work, args: argparse.Namespace, on_done: Done | None = None
) -> list[tuple[Result, Any]]:
    """Every file through ``work`` with at most ``--concurrency`` in flight, ``on_done`` with each result as it
    comes; results in the input's order."""
    gate = asyncio.Semaphore(args.concurrency)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet or not console.is_terminal,
    )

    with progress:
        task = progress.add_task(args.command, total=len(paths), failed=0)
        failed = 0

        async def guarded(path: Path) -> tuple[Result, Any]:
            nonlocal failed
            async with gate:
                done = await _one(path, work, args.retries)
            if on_done is not None:
                on_done(*done)
            TALLY.done += 1
            failed += not done[0].ok
            progress.update(task, advance=1, failed=failed)
            return done

        return await asyncio.gather(*(guarded(path) for path in paths))


async def classify(paths: list[Path], args: argparse.Namespace) -> list[Result]:
    client: Gateway | Triton = (
        Triton(args.triton_url, args.timeout) if args.grpc else Gateway(args.url, args.api_key, args.timeout)
    )
    try:
        await client.check()
        done = await run_all(paths, lambda body: client.classify(body, args.top_k, args.model), args)
    finally:
        await client.close()
    for result, answer in done:
        result.answer = answer
    return [result for result, _ in done]


async def edges(paths: list[Path], args: argparse.Namespace) -> list[Result]:
    outputs, renamed = edges_outputs(paths)
    for sources in renamed:
        print(f"tritonserve: {' and '.join(map(str, sources))} would write the same edge map: "
              f"writing {', '.join(str(outputs[s]) for s in sources)}", file=sys.stderr)  # fmt: skip
    gateway = Gateway(args.url, args.api_key, args.timeout)

    def write(result: Result, png: bytes | None) -> None:  # as each answer comes: Ctrl-C keeps what is done
        if png is None:
            return
        result.output = outputs[result.path]
        try:
            result.output.write_bytes(png)
        except OSError as exc:
            result.error = Failure(f"cannot write {result.output}: {exc.strerror or exc}", "unwritable").as_dict()

    try:
        await gateway.check()
        done = await run_all(paths, lambda body: gateway.edges(body, args.low, args.high), args, write)
    finally:
        await gateway.close()
    return [result for result, _ in done]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths, unmatched = expand(args.paths)
    if not paths:
        print(f"tritonserve: no images in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(classify(paths, args) if args.command == "classify" else edges(paths, args))
    except KeyboardInterrupt:
        print(f"\ntritonserve: interrupted, {TALLY.done} of {len(paths)} done", file=sys.stderr)
        return INTERRUPTED
    except Failure as exc:  # the server cannot be reached, or is not what --url says: nothing was sent
        print(f"tritonserve: {exc.message}", file=sys.stderr)
        return 2
    results += [
        Result(Path(argument), error=Failure("no such file, or no images in it", "not_found").as_dict())
        for argument in unmatched
    ]
    failures = [r for r in results if not r.ok]
    if args.command == "classify":
        output.write(results, args.format, args.output)
    else:
        for result in results:
            if result.ok:
                print(result.output)
    for result in failures:
        print(f"tritonserve: {result.path}: {result.error and result.error['message']}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
