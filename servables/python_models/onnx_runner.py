"""Triton python-backend model that runs a ``model.onnx`` with ONNX Runtime.

The launcher copies this one file into each onnxruntime model of the runtime repository when the server at
hand has no onnxruntime backend. Requests the dynamic batcher hands over together are concatenated along the
batch axis and run as one ONNX Runtime call (that is what batching buys); requests whose shapes differ (raw
images of different sizes) run one by one. Uses the CUDA execution provider on a GPU instance when the
installed onnxruntime has it, else the CPU.

A batch of several images runs in slices, one per core, each in one thread of a single-threaded session; a lone
image (and what is left of a batch that does not divide evenly) runs on all cores in the multi-threaded session.
ONNX Runtime's parallel loops end with the caller waiting, busy, for every worker's share: when another process
holds a worker's core, the caller's core burns too (``Slices`` says what that cost).

On a CPU host the local runtime may fuse the python-backend step that feeds this graph into it (``servables.runtime``
puts that model's ``model.py`` and config beside ``model.onnx`` as ``head.py`` and ``head.json``): the head runs
first, in this process, on the requests as they came, and its answers are this graph's inputs; what it refuses is
answered as it answered. One stub and one ensemble step fewer per request.

Nothing runs long for a client that has gone. Triton marks a request cancelled when its gRPC call is cancelled or
its deadline passes, and an ensemble marks the steps it has not started yet, not the one running: a run whose
requests are all cancelled, or all past the deadline their client sent as a parameter (which ensembles pass to
every step), before it started or while it runs, is stopped within ``CANCEL_POLL_S``; they are answered CANCELLED.
A deadline that is not an integer within a day of the server's clock is refused (INVALID_ARGUMENT), not ignored:
the client believes it bounds its work, and it would not.

Memory comes back after large inputs. ONNX Runtime's CPU arena keeps the largest run's intermediates for the life of
the process (1.4 GB per instance after one 16 MP edge map, 3.1 after 40 MP). A run whose inputs are over the config's
``arena_shrinkage_above_bytes`` ends with ORT's ``memory.enable_memory_arena_shrinkage`` run option, which gives the
arena's free regions back; smaller runs keep theirs, since regrowing costs page faults on every run (a 12 MP edge
map: 0.58 -> 1.5 s of CPU here). Triton's onnxruntime backend knows only the unconditional option, for every run.
"""

import json
import os
import runpy
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# How often a run in progress asks Triton whether its requests were cancelled: a round trip to the Triton process
# (about 0.1 ms) per look, against at most this much compute wasted for clients that have gone.
CANCEL_POLL_S = 0.05
DEADLINE_PARAMETER = "deadline_unix_ns"  # servables.names.DEADLINE_PARAMETER
# Further than this from the server's clock, a deadline is a mistake (seconds or milliseconds sent as nanoseconds).
DEADLINE_WINDOW_NS = 24 * 3600 * 10**9
HEAD_MODEL, HEAD_CONFIG = "head.py", "head.json"  # servables.runtime writes them


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(parameters.get("inter_op_thread_count", "0"))
        # Several sessions share the cores (one per instance, each its own process): spinning idle workers
        # would steal them from the session doing the work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.shrink_above_bytes = int(parameters.get("arena_shrinkage_above_bytes", "-1"))  # -1: never
        providers: list[str | tuple[str, dict[str, int]]] = ["CPUExecutionProvider"]
        if args["model_instance_kind"] == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0
        self.watch = CancelWatch()
        threads = options.intra_op_num_threads or len(os.sched_getaffinity(0))
        self.slices = None
        if config.get("max_batch_size", 0) > 1 and threads > 1 and len(providers) == 1:  # batches, on the CPU
            options.intra_op_num_threads = 1
            self.slices = Slices(ort.InferenceSession(path, options, providers=providers), threads)
        self.head = _head(args)

    def execute(self, requests):
        responses = [None] * len(requests)
        deadlines = {}
        for i, request in enumerate(requests):
            try:
                deadlines[i] = _deadline(request)
            except ValueError as exc:
                responses[i] = _invalid(str(exc))
        feeds = self._inputs({i: requests[i] for i in deadlines}, responses)
        for indices in self._groups(feeds):
            options = _run_options()
            if 0 <= self.shrink_above_bytes < sum(array.nbytes for i in indices for array in feeds[i].values()):
                options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            try:
                with self.watch.running([requests[i] for i in indices], [deadlines[i] for i in indices], options):
                    results = self._run([feeds[i] for i in indices], options)
                for i, outputs in zip(indices, results, strict=True):
                    named = zip(self.outputs, outputs, strict=True)
                    tensors = [pb_utils.Tensor(name, array) for name, array in named]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception as exc:  # an ORT error answers the requests of its group, not the model
                for i in indices:
                    responses[i] = _cancelled() if options.terminate else _error(exc)
        return responses

    def _inputs(self, requests, responses):
        """The feeds of ``requests`` (by index): without a head, each request's own tensors; with one, what the head
        answered it, its refusals going to ``responses`` as they are."""
        if self.head is None:
            return {i: self._feeds(request) for i, request in requests.items()}
        feeds = {}
        (graph_input,) = self.session.get_inputs()
        indices = list(requests)
        for i, answer in zip(indices, self.head.execute([requests[i] for i in indices]), strict=True):
            if answer.has_error():
                responses[i] = answer
            else:
                (tensor,) = answer.output_tensors()
                feeds[i] = {graph_input.name: tensor.as_numpy()}
        return feeds

    def _feeds(self, request):
        feeds = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:  # optional inputs fall back to the graph's defaults
                feeds[name] = tensor.as_numpy()
        return feeds

    def _groups(self, feeds):
        """Indices of requests that can share one call: same inputs present with the same per-item shapes."""
        groups: dict[object, list[int]] = {}
        for i, feed in feeds.items():
            key = tuple((name, array.shape[1:] if self.batched else array.shape) for name, array in feed.items())
            groups.setdefault(key if self.batched else i, []).append(i)
        return groups.values()

    def _run(self, feeds, options):
        stacked = feeds[0] if len(feeds) == 1 else {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        if self.slices is None:
            outputs = self.session.run(self.outputs, stacked, options)
        else:
            outputs = self.slices.run(self.session, self.outputs, stacked, options)
        if len(feeds) == 1:
            return [outputs]
        bounds = np.cumsum([len(next(iter(feed.values()))) for feed in feeds])[:-1]
        split = [np.split(array, bounds) for array in outputs]
        return [[parts[i] for parts in split] for i in range(len(feeds))]


class Slices:
    """A batch of ``n`` images as ``threads`` equal slices run at once on a single-threaded session, each in a
    thread of its own (ONNX Runtime releases the GIL), then the ``n mod threads`` left over on the multi-threaded
    session: every core works on its own images, with one wait per batch instead of one per parallel loop.

    ResNet-50, 2 cores shared with the other processes of the stack: 74-78 CPU-ms per image against 92-101 for
    the two-threaded session at the same batches (gRPC straight to the network, concurrency 16, interleaved).
    Two instances of one thread each cost the same as slices at concurrency 16, but run a lone image on one core.
    The single-threaded session holds its own copy of the weights: the ResNet-50 stub holds 462 MB, not 343.
    """

    def __init__(self, session, threads):
        self.session = session
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="slice")

    def run(self, whole, outputs, feeds, options):
        total = len(next(iter(feeds.values())))
        width = total // self.threads
        if width == 0:
            return whole.run(outputs, feeds, options)
        cut = width * self.threads
        futures = [
            self.pool.submit(self.session.run, outputs, _rows(feeds, start, start + width), options)
            for start in range(width, cut, width)
        ]
        try:
            results = [self.session.run(outputs, _rows(feeds, 0, width), options), *(f.result() for f in futures)]
            if cut < total:
                results.append(whole.run(outputs, _rows(feeds, cut, total), options))
        finally:  # the inputs are Triton's shared memory: no slice may outlive this call
            wait(futures)
        return [np.concatenate(arrays) for arrays in zip(*results, strict=True)]


def _head(args):
    """The python model fused before this graph, initialised with its own config as Triton would; None without."""
    folder = os.path.join(args["model_repository"], args["model_version"])
    if not os.path.isfile(os.path.join(folder, HEAD_MODEL)):
        return None
    head = runpy.run_path(os.path.join(folder, HEAD_MODEL))["TritonPythonModel"]()
    with open(os.path.join(folder, HEAD_CONFIG)) as config:
        head.initialize({**args, "model_config": config.read()})
    return head


def _rows(feeds, start, stop):
    return {name: array[start:stop] for name, array in feeds.items()}


class CancelWatch:
    """A thread that looks every ``CANCEL_POLL_S`` whether all the requests of the run in progress, if any, are
    past their deadline or were cancelled (asking Triton) and, once they are, sets that run's terminate flag: ONNX
    Runtime then stops it before its next node. A run that any of its clients still waits for goes on.

    A run only publishes itself, which costs it nothing measurable; the thread wakes 20 times a second even when
    idle instead (0.3% of a core for a whole server). Asking before each run cost a round trip to Triton, +0.4 ms
    on a 25 ms classify call; waking the thread as each run starts, +0.2 ms on a small preprocess call.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._run = None  # (requests, RunOptions, the latest of their deadlines or None) of the run in progress
        threading.Thread(target=self._watch, daemon=True).start()

    @contextmanager
    def running(self, requests, deadlines, options):
        self._run = requests, options, None if None in deadlines else max(deadlines)
        try:
            yield
        finally:
            with self._lock:  # never during a look: the requests must outlive it
                self._run = None

    def _watch(self):
        while True:
            time.sleep(CANCEL_POLL_S)
            with self._lock:
                if self._run is not None:
                    try:
                        self._look(*self._run)
                    except Exception as exc:  # one failed look costs that look, never the watcher
                        pb_utils.Logger.log_error(f"cancellation watcher: {exc!r}")

    @staticmethod
    def _look(requests, options, deadline):
        if (deadline is not None and time.time_ns() > deadline) or all(request.is_cancelled() for request in requests):
            options.terminate = True


def _deadline(request):
    """When the request's client stops waiting (ns since the epoch), or None; ValueError when it is not a deadline."""
    value = json.loads(request.parameters()).get(DEADLINE_PARAMETER)
    if value is None:
        return None
    if type(value) is not int or abs(value - time.time_ns()) > DEADLINE_WINDOW_NS:  # bool is an int: not here
        raise ValueError(
            f"the {DEADLINE_PARAMETER} parameter must be an integer, nanoseconds since the epoch within a day of "
            f"the server's clock ({time.time_ns()}), not {repr(value)[:40]}"
        )
    return value


def _run_options():
    options = ort.RunOptions()
    # A run stopped on purpose is not worth an error line in Triton's log (ORT logs it as one); a real failure
    # still reaches its requests' clients, with ORT's message.
    options.log_severity_level = 4
    return options


def _cancelled():
    error = pb_utils.TritonError("the request was cancelled: its client has gone", pb_utils.TritonError.CANCELLED)
    return pb_utils.InferenceResponse(error=error)


def _invalid(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def _error(exc):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {exc}"))
