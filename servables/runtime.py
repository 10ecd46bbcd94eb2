"""The local runtime's copy of a repository: what a ``tritonserver`` without an onnxruntime backend can run.

The committed configs say ``backend: "onnxruntime"`` (what the NGC image runs). The ``tritonserver`` in PyPI's
``nvidia-pytriton`` has only the python backend, so each onnxruntime model becomes a python-backend model that
runs the same ``model.onnx`` with ONNX Runtime (``python_models/onnx_runner.py``), every other field kept
(batching, queue policy, ensembles, labels). In a virtualenv, python-backend models are pointed at it.

On a CPU host, no batcher waits for a fuller batch (``batch_delay`` off: ``max_queue_delay_microseconds`` 0). A
network's execution there takes tens of milliseconds, so under load the requests queue behind it and form the next
batch anyway; the only request a delay holds is one that finds the network idle (ResNet-18, this repository's test
model, on 2 AMD EPYC cores: 2 ms of delay cost a lone client 2.3 ms a request, and 16 clients saw the same mean
batch, 6.3 and 6.4, either way). A GPU host keeps the configs' delays: a batch there takes a few milliseconds.

On a CPU host (``fuse``), an ensemble step that runs a python model whose one output feeds only an ONNX graph's one
input (decode -> preprocess, in every classifier's ensemble) runs as one model: the runner with that python model as
its head (``fused``). The steps are read from the ensembles as data, so any such pair fuses, once, whatever the
ensembles are called; the models themselves stay served as they were. A GPU host keeps the steps apart (there the
decode hands the pixels on as GPU tensors).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelEnsembling

from servables.repository import CONFIG_FILE, ONNX_FILE, PYTHON_FILE, read_config, read_repository

ONNX_RUNNER = Path(__file__).with_name("python_models") / "onnx_runner.py"
HEAD_MODEL, HEAD_CONFIG = "head.py", "head.json"  # beside a fused model's model.onnx (onnx_runner.py reads them)


class MissingModelFile(FileNotFoundError):
    """A version folder lacks the file its backend runs: the repository was not exported."""


def materialise(
    repository: Path,
    target: Path,
    native_onnxruntime: bool,
    python_env: str | None,
    fuse: bool = False,
    cache: bool = False,
    batch_delay: bool = True,
) -> Path:
    """Links to ``repository`` under ``target``, with configs rewritten where the server at hand needs it; ``fuse``:
    ensembles' python-then-ONNX step pairs run as one model each (where ONNX runs in python, on a CPU host);
    ``cache``: the networks answer repeats from Triton's response cache (``cached``); ``batch_delay`` off: the
    batchers wait for no fuller batch (a CPU host). Models already there stay as they are (``refresh`` follows
    their versions): run again, it adds the models exported since."""
    target.mkdir(parents=True, exist_ok=True)
    configs = read_repository(repository)
    fusions = fused(configs) if fuse and not native_onnxruntime else Fusions()
    caching = cached(configs) if cache else {}
    undelayed = set() if batch_delay else delayed(configs)
    for name in undelayed:
        configs[name].dynamic_batching.max_queue_delay_microseconds = 0
    for name, read in caching.items():
        configs[name].response_cache.enable = True
        kept = [tensor for tensor in configs[name].output if tensor.name in read]
        del configs[name].output[:]
        configs[name].output.extend(kept)
    for name, config in configs.items():
        if (target / name).exists():
            continue
        source = repository / name
        run_onnx_in_python = config.backend == "onnxruntime" and not native_onnxruntime
        rewritten = name in fusions.rewritten_ensembles or name in caching or name in undelayed
        if config.backend != "python" and not run_onnx_in_python and not rewritten:
            (target / name).symlink_to(source.resolve(), target_is_directory=True)
            continue
        folder = target / name
        folder.mkdir()
        for entry in source.iterdir():
            if entry.is_dir() and entry.name.isdigit() and (config.backend == "python" or run_onnx_in_python):
                _version(entry, folder / entry.name, run_onnx_in_python)
            elif entry.name != CONFIG_FILE:
                (folder / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        if config.backend == "python" or run_onnx_in_python:
            _to_python(config, python_env)
        (folder / CONFIG_FILE).write_text(text_format.MessageToString(config))
    for name, (config, head, tail) in fusions.models.items():
        if (target / name).exists():
            continue
        version = target / name / "1"
        version.mkdir(parents=True)
        shutil.copyfile(ONNX_RUNNER, version / PYTHON_FILE)
        (version / ONNX_FILE).symlink_to(_latest(repository / tail, ONNX_FILE).resolve())
        head_version = _latest(repository / head, PYTHON_FILE).parent
        (version / HEAD_MODEL).symlink_to((head_version / PYTHON_FILE).resolve())
        for package in (entry for entry in head_version.iterdir() if entry.is_dir()):  # the code it vendors
            (version / package.name).symlink_to(package.resolve(), target_is_directory=True)
        head_config = configs[head]
        (version / HEAD_CONFIG).write_text(json_format.MessageToJson(head_config, preserving_proto_field_name=True))
        _to_python(config, python_env)
        (target / name / CONFIG_FILE).write_text(text_format.MessageToString(config))
    return target


def delayed(configs: dict[str, ModelConfig]) -> set[str]:
    """The models whose batcher waits for a fuller batch (a nonzero ``max_queue_delay_microseconds``)."""
    return {name for name, config in configs.items() if config.dynamic_batching.max_queue_delay_microseconds}


def cached(configs: dict[str, ModelConfig]) -> dict[str, set[str]]:
    """The models that answer repeats from Triton's response cache, and the outputs the ensembles read of each: the
    networks of the ensembles, that is each step that batches (dynamic batching) and whose inputs all have fixed
    shapes. Such a model serves only those outputs while cached: the key ignores which outputs a request asked for,
    so an entry made for one would answer a request for another without it; asked for, the rest are refused.

    Not the ensembles themselves: Triton 24.10 keys an entry by the model it was asked of, that model's version
    and the input bytes (``TritonCache::Hash`` in core's cache_manager.cc), so an ensemble's entries name the
    ensemble's own version, never its steps'. Once a new version of the network is loaded (or a newer one dropped
    again), the ensemble would keep answering from the entries the old one made, and nothing evicts them but
    their age. Keyed at the network, an entry is that version's answer; a fixed-shape input also bounds what
    every request pays for its key (the preprocessed tensor's bytes, whatever the upload's size). A hit still
    decodes and preprocesses; it skips the network, queue and batch included.
    """
    found: dict[str, set[str]] = {}
    for ensemble in configs.values():
        if ensemble.platform != "ensemble":
            continue
        for step in ensemble.ensemble_scheduling.step:
            model = configs.get(step.model_name)
            if model is None or not model.input or not model.HasField("dynamic_batching"):
                continue
            if all(-1 not in tensor.dims for tensor in model.input):
                found.setdefault(step.model_name, set()).update(step.output_map)
    return found


def _to_python(config: ModelConfig, python_env: str | None) -> None:
    config.backend = "python"
    # The stub must see the virtualenv's packages (PYTHONPATH is not passed through); a model that names its own
    # environment keeps it (deploy/verify_images.py runs the decode models in the Triton image's).
    if python_env and "EXECUTION_ENV_PATH" not in config.parameters:
        config.parameters["EXECUTION_ENV_PATH"].string_value = python_env


def _latest(model: Path, file: str) -> Path:
    """``file`` in the model's newest version folder: the one a default version policy serves."""
    versions = sorted(int(entry.name) for entry in model.iterdir() if entry.is_dir() and entry.name.isdigit())
    if not versions or not (model / str(versions[-1]) / file).is_file():
        raise MissingModelFile(f"{model}/<version>/{file} is missing: run `python -m export` first")
    return model / str(versions[-1]) / file


class Fusions:
    """What ``fused`` found: the fused models (config, head, tail by name) and the ensembles whose steps changed."""

    def __init__(self) -> None:
        self.models: dict[str, tuple[ModelConfig, str, str]] = {}
        self.rewritten_ensembles: set[str] = set()


def fused(configs: dict[str, ModelConfig]) -> Fusions:
    """Every ensemble's (python step, ONNX step) pairs joined where the python model's one output feeds nothing but
    the ONNX graph's one input: the ensembles' steps are rewritten in place, the fused models returned."""
    found = Fusions()
    for ensemble in configs.values():
        if ensemble.platform != "ensemble":
            continue
        steps = ensemble.ensemble_scheduling.step
        for head, tail in list(_pairs(configs, ensemble)):
            name = f"{head.model_name}_then_{tail.model_name}"
            if name not in found.models:
                found.models[name] = (_fused_config(name, configs[head.model_name], configs[tail.model_name]),
                                      head.model_name, tail.model_name)  # fmt: skip
            joined = ModelEnsembling.Step(model_name=name, model_version=-1)
            joined.input_map.update(head.input_map)
            joined.output_map.update(tail.output_map)
            position = list(steps).index(head)
            steps.remove(tail)
            steps.remove(head)
            steps.insert(position, joined)
            found.rewritten_ensembles.add(ensemble.name)
    return found


def _pairs(
    configs: dict[str, ModelConfig], ensemble: ModelConfig
) -> Iterator[tuple[ModelEnsembling.Step, ModelEnsembling.Step]]:
    """(python step, ONNX step) pairs of one ensemble that can run as one model."""
    steps = list(ensemble.ensemble_scheduling.step)
    outputs = {tensor.name for tensor in ensemble.output}
    for head in steps:
        model = configs.get(head.model_name)
        if model is None or model.backend != "python" or len(head.output_map) != 1 or head.model_version != -1:
            continue
        (tensor,) = head.output_map.values()
        readers = [step for step in steps if tensor in step.input_map.values()]
        if tensor in outputs or len(readers) != 1:
            continue
        (tail,) = readers
        graph = configs.get(tail.model_name)
        ok = graph is not None and graph.backend == "onnxruntime" and len(tail.input_map) == len(graph.input) == 1
        if ok and tail.model_version == -1 and len(model.output) == 1:
            yield head, tail


def _fused_config(name: str, head: ModelConfig, tail: ModelConfig) -> ModelConfig:
    """The tail's outputs and parameters (its thread count) behind the head's inputs and scheduling."""
    config = ModelConfig()
    config.CopyFrom(tail)
    config.name = name
    config.max_batch_size = head.max_batch_size
    del config.input[:]
    config.input.extend(head.input)
    del config.instance_group[:]
    config.instance_group.extend(head.instance_group)
    config.ClearField("dynamic_batching")
    if head.HasField("dynamic_batching"):
        config.dynamic_batching.CopyFrom(head.dynamic_batching)
    config.ClearField("version_policy")
    del config.model_warmup[:]  # the tail's warm-up feeds pixels; the head takes what clients send
    return config


def _version(source: Path, target: Path, run_onnx_in_python: bool) -> None:
    needed = ONNX_FILE if run_onnx_in_python else PYTHON_FILE
    if not (source / needed).is_file():
        raise MissingModelFile(f"{source / needed} is missing: run `python -m export` first")
    if not run_onnx_in_python:
        target.symlink_to(source.resolve(), target_is_directory=True)
        return
    target.mkdir()
    (target / ONNX_FILE).symlink_to((source / ONNX_FILE).resolve())
    shutil.copyfile(ONNX_RUNNER, target / PYTHON_FILE)


def refresh(repository: Path, target: Path) -> list[Path]:
    """Bring the rewritten models' version folders in line with ``repository`` after it changed (a version
    exported or removed), so Triton's load API finds what the repository holds; linked models see it already."""
    changed = []
    for folder in sorted(p for p in target.iterdir() if p.is_dir() and not p.is_symlink()):
        source = repository / folder.name
        if not (source / CONFIG_FILE).is_file():
            continue
        config = read_config(source / CONFIG_FILE)
        if config.platform == "ensemble":  # its version folders are links to the repository's
            continue
        run_onnx_in_python = config.backend == "onnxruntime"
        wanted = _versions(source)
        present = _versions(folder)
        for version in sorted(wanted - present):
            _version(source / version, folder / version, run_onnx_in_python)
            changed.append(folder / version)
        for version in sorted(present - wanted):
            path = folder / version
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path)
            changed.append(path)
    return changed


def _versions(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name.isdigit()}
