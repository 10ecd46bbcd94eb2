"""servables.runtime fuses an ensemble's python step into the ONNX step it alone feeds, read from the ensembles'
steps as data: every classifier's decode -> preprocess, whatever the names; nothing else."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from servables import names
from servables.default import model_configs
from servables.runtime import HEAD_CONFIG, HEAD_MODEL, cached, fused, materialise
from servables.specs import Batching, PreprocessSpec

FUSED = f"{names.DECODE_REDUCED}_then_{names.PREPROCESS}"
FUSED_PIXELS = f"{names.CHECK_PIXELS}_then_{names.PREPROCESS}"  # classify_pixels' pixel check and preprocessing


def _configs(extra: dict[str, dict[str, Any]] | None = None) -> dict[str, ModelConfig]:
    built = model_configs("resnet50", PreprocessSpec(), Batching()) | (extra or {})
    return {name: json_format.ParseDict(config, ModelConfig()) for name, config in built.items()}


def _steps(config: ModelConfig) -> list[str]:
    return [step.model_name for step in config.ensemble_scheduling.step]


def test_decode_and_preprocess_run_as_one_step_of_classify() -> None:
    configs = _configs()
    found = fused(configs)
    assert set(found.models) == {FUSED, FUSED_PIXELS}
    assert found.rewritten_ensembles == {names.CLASSIFY, names.CLASSIFY_PIXELS}
    assert _steps(configs[names.CLASSIFY]) == [FUSED, "resnet50"]
    assert _steps(configs[names.CLASSIFY_PIXELS]) == [FUSED_PIXELS, "resnet50"]
    (step, _) = configs[names.CLASSIFY].ensemble_scheduling.step
    assert dict(step.input_map) == {names.IMAGE: names.IMAGE}
    assert dict(step.output_map) == {names.INPUT: "preprocessed"}  # what the network's step reads, unchanged
    config, head, tail = found.models[FUSED]
    assert (head, tail) == (names.DECODE_REDUCED, names.PREPROCESS)
    # The head's input, batching and instances; the graph's output and thread count; no pixel warm-up.
    assert [t.name for t in config.input] == [names.IMAGE] and config.input[0].dims == [-1]
    assert config.input[0].allow_ragged_batch and config.max_batch_size == configs[names.DECODE_REDUCED].max_batch_size
    assert [t.name for t in config.output] == [names.INPUT] and list(config.output[0].dims) == [3, 224, 224]
    assert config.instance_group == configs[names.DECODE_REDUCED].instance_group
    assert config.parameters["intra_op_thread_count"].string_value == "1" and not config.model_warmup


def test_other_ensembles_keep_their_steps() -> None:
    configs = _configs()
    before = {name: copy.deepcopy(config) for name, config in configs.items()}
    fused(configs)
    # edges and canny: the graph reads the pixels and six parameters.
    assert configs[names.EDGES] == before[names.EDGES] and configs[names.CANNY] == before[names.CANNY]
    assert all(configs[name] == before[name] for name in before if name not in (names.CLASSIFY, names.CLASSIFY_PIXELS))


def _classifier(name: str, decode: str, preprocess: str, network: str = "resnet50") -> dict[str, Any]:
    """Another classifier's ensemble, as the per-kind contracts build them: decode -> preprocess -> network."""

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
        return {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}

    return {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": 8,
        "input": [{"name": names.IMAGE, "data_type": "TYPE_UINT8", "dims": [-1]}],
        "output": [{"name": names.PROBABILITIES, "data_type": "TYPE_FP32", "dims": [1000]}],
        "ensemble_scheduling": {"step": [
            step(network, {names.INPUT: "x"}, {names.PROBABILITIES: names.PROBABILITIES}),  # in any order
            step(decode, {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"}),
            step(preprocess, {names.IMAGE: "pixels"}, {names.INPUT: "x"}),
        ]},
    }  # fmt: skip


def test_every_classifier_fuses_its_own_pair_and_a_shared_pair_once() -> None:
    configs = _configs()
    small = json.loads(json.dumps(model_configs("resnet50", PreprocessSpec(), Batching())))
    extra = {
        "preprocess_small": {**small[names.PREPROCESS], "name": "preprocess_small"},
        "classify_small": _classifier("classify_small", names.DECODE, "preprocess_small"),
        "classify_again": _classifier("classify_again", names.DECODE_REDUCED, names.PREPROCESS),
    }
    configs = _configs(extra)
    found = fused(configs)
    assert set(found.models) == {FUSED, FUSED_PIXELS, f"{names.DECODE}_then_preprocess_small"}
    assert found.rewritten_ensembles == {names.CLASSIFY, names.CLASSIFY_PIXELS, "classify_small", "classify_again"}
    assert _steps(configs["classify_again"]) == ["resnet50", FUSED]
    assert _steps(configs["classify_small"]) == ["resnet50", f"{names.DECODE}_then_preprocess_small"]


def test_pixels_read_by_two_steps_are_not_fused_away() -> None:
    ensemble = _classifier("classify_twice", names.DECODE_REDUCED, names.PREPROCESS)
    ensemble["ensemble_scheduling"]["step"].append(
        {"model_name": names.CANNY, "model_version": -1, "input_map": {names.IMAGE: "pixels"},
         "output_map": {names.EDGE_MAP: "edges"}}
    )  # fmt: skip
    configs = _configs({"classify_twice": ensemble})
    fused(configs)
    assert names.DECODE_REDUCED in _steps(configs["classify_twice"])


def _written_repository(folder: Path) -> Path:
    """The default repository written to ``folder``: its configs, its python models, and a stand-in file for
    each ONNX graph (the runtime copy links or reads them, never runs them)."""
    from servables.repository import write_configs, write_python_models

    repository = folder / "repository"
    built = model_configs("resnet50", PreprocessSpec(), Batching())
    write_configs(repository, built)
    write_python_models(repository, built)
    for name, config in built.items():
        if config.get("backend") == "onnxruntime":
            (repository / name / "1" / "model.onnx").write_bytes(b"onnx")
    return repository


def test_the_runtime_copy_holds_the_runner_its_graph_and_its_head(tmp_path: Path) -> None:
    repository = _written_repository(tmp_path)
    split = materialise(repository, tmp_path / "split", False, None)
    assert not (split / FUSED).exists()
    runtime = materialise(repository, tmp_path / "fused", False, "/venv", fuse=True)
    version = runtime / FUSED / "1"
    assert (version / "model.py").read_text().startswith('"""Triton python-backend model that runs a ``model.onnx``')
    assert (version / "model.onnx").resolve() == (repository / names.PREPROCESS / "1" / "model.onnx").resolve()
    assert (version / HEAD_MODEL).resolve() == (repository / names.DECODE_REDUCED / "1" / "model.py").resolve()
    # The code the head imports, vendored beside its model.py, is beside it here too (the stub's sys.path).
    assert (version / "imaging" / "decode.py").is_file()
    head = json.loads((version / HEAD_CONFIG).read_text())
    assert head["name"] == names.DECODE_REDUCED and head["parameters"]["min_side"] == {"string_value": "256"}
    assert 'backend: "python"' in (runtime / FUSED / "config.pbtxt").read_text()
    assert FUSED in (runtime / names.CLASSIFY / "config.pbtxt").read_text()
    assert (runtime / names.CLASSIFY / "1").is_symlink()  # the ensemble's own files, linked
    assert (runtime / names.EDGES).is_symlink()  # untouched ensembles are linked as before


def test_the_response_cache_goes_on_the_network_with_the_outputs_the_ensembles_read() -> None:
    configs = _configs()
    # classify and classify_pixels read these (each answer names the version and weights that produced it)
    assert cached(configs) == {"resnet50": {names.PROBABILITIES, names.MODEL_ID}}
    del configs[names.CLASSIFY], configs[names.CLASSIFY_PIXELS]
    assert cached(configs) == {}  # edges' steps take images of any size: their keys would hash whole photos


def test_the_runtime_copy_caches_the_network_only_when_asked(tmp_path: Path) -> None:
    from servables.repository import read_config

    repository = _written_repository(tmp_path)
    plain = read_config(materialise(repository, tmp_path / "plain", False, None) / "resnet50" / "config.pbtxt")
    assert not plain.response_cache.enable and len(plain.output) == 3
    runtime = materialise(repository, tmp_path / "cached", True, None, cache=True)  # native ORT: linked files
    network = read_config(runtime / "resnet50" / "config.pbtxt")
    assert network.response_cache.enable and [t.name for t in network.output] == [names.PROBABILITIES, names.MODEL_ID]
    assert network.backend == "onnxruntime" and (runtime / "resnet50" / "1").is_symlink()
    assert not read_config(runtime / names.CLASSIFY / "config.pbtxt").response_cache.enable


def test_on_a_cpu_host_no_batcher_waits_for_a_fuller_batch(tmp_path: Path) -> None:
    from servables.repository import read_config

    repository = _written_repository(tmp_path)
    exported = read_config(repository / "resnet50" / "config.pbtxt").dynamic_batching.max_queue_delay_microseconds
    assert exported == Batching().max_queue_delay_us > 0
    kept = materialise(repository, tmp_path / "kept", True, None)  # a GPU host's runtime: the delays as exported
    assert read_config(kept / "resnet50" / "config.pbtxt").dynamic_batching.max_queue_delay_microseconds == exported
    for native in (False, True):  # ONNX run in python (rewritten anyway), or by the native backend (linked files)
        runtime = materialise(repository, tmp_path / f"cpu-{native}", native, None, batch_delay=False)
        network = read_config(runtime / "resnet50" / "config.pbtxt")
        assert network.dynamic_batching.max_queue_delay_microseconds == 0
        assert network.dynamic_batching.default_queue_policy.max_queue_size == Batching().max_queue_size  # kept
        assert (runtime / "resnet50" / "1").is_symlink() is native
