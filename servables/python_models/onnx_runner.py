"""Triton python-backend model that runs a ``model.onnx`` with ONNX Runtime.

The launcher copies this one file into each onnxruntime model of the runtime repository when the server at
hand has no onnxruntime backend. Requests the dynamic batcher hands over together are concatenated along the
batch axis and run as one ONNX Runtime call (that is what batching buys); requests whose shapes differ (raw
images of different sizes) run one by one. Uses the CUDA execution provider on a GPU instance when the
installed onnxruntime has it, else the CPU.

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
import threading
import time
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

    def execute(self, requests):
        responses = [None] * len(requests)
        feeds, deadlines = {}, {}
        for i, request in enumerate(requests):
            try:
                deadlines[i] = _deadline(request)
            except ValueError as exc:
                responses[i] = _invalid(str(exc))
                continue
            feeds[i] = self._feeds(request)
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
        if len(feeds) == 1:
            return [self.session.run(self.outputs, feeds[0], options)]
        sizes = [len(next(iter(feed.values()))) for feed in feeds]
        stacked = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
        outputs = self.session.run(self.outputs, stacked, options)
        bounds = np.cumsum(sizes)[:-1]
        split = [np.split(array, bounds) for array in outputs]
        return [[parts[i] for parts in split] for i in range(len(feeds))]


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
