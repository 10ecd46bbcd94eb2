"""The classification kind on Triton's side: a classifier's models and their configs, what its ensemble tells about
it, and what its answers carry.

A classifier is two entry points over the same steps: ``NAME`` takes the file's bytes (decoded inside Triton at
the scale its preprocessing needs), ``NAME_pixels`` decoded BGR pixels; then its own preprocessing graph
(``NAME_preprocess``) and its network (``NAME_network``), which Triton batches dynamically. The default
classifier keeps the names clients know: ``classify``, ``classify_pixels``, ``preprocess`` and the ResNet's own
name (``resnet50``). Its bytes entry point carries what a client needs to know about it in its config's
``parameters`` (``kind``, the preprocessing), its labels are the outputs' ``label_filename``, and every answer
names the network version and weights that produced it (``MODEL_ID``, built into the network's graph).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2

from servables import names
from servables.configs import (
    ENCODED,
    IMAGE_MAX_BATCH,
    PIXELS,
    SHRINK_ARENA,
    check_pixels_config,
    check_step,
    decode_config,
    decode_model,
    ensemble,
    parameters,
    step,
    tensor,
    warmup,
)
from servables.repository import CONFIG_FILE, IDENTITY_FILE, read_config
from servables.specs import Batching, PreprocessSpec

KIND = "classification"  # the ``kind`` parameter of a classifier's bytes entry point
IMAGENET_CLASSES = 1000
PIXELS_SUFFIX = "_pixels"


@dataclass(frozen=True)
class Identity:
    """Which version of a network answered and what it learnt. The export writes it into the network's graph as
    a constant output (``MODEL_ID``), so every answer says it, through an ensemble or straight from the network,
    under Triton's native onnxruntime backend and the local runner alike, and whatever version ran during a swap."""

    version: str
    weights: str

    def encode(self) -> str:
        return json.dumps({"version": self.version, "weights": self.weights})

    @classmethod
    def decode(cls, raw: bytes | str) -> Identity:
        fields = json.loads(raw)
        return cls(str(fields["version"]), str(fields["weights"]))

    @classmethod
    def read(cls, version_folder: Path) -> Identity | None:
        """The copy the export leaves beside the network's ``model.onnx``, for readers without Triton at hand."""
        path = version_folder / IDENTITY_FILE
        return cls.decode(path.read_text()) if path.is_file() else None

    def write(self, version_folder: Path) -> Path:
        path = version_folder / IDENTITY_FILE
        path.write_text(self.encode() + "\n")
        return path


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


def parse_predictions(entries: Iterable[bytes]) -> list[Prediction]:
    """Triton's classification extension answers ``b"score:index:label"`` per class, most probable first."""
    predictions = []
    for entry in entries:
        score, index, label = entry.decode().split(":", 2)
        predictions.append(Prediction(label=label, index=int(index), probability=float(score)))
    return predictions


@dataclass(frozen=True)
class Classifier:
    """One classifier's models: names, preprocessing and class count, and the configs of each."""

    name: str  # the entry point taking the file's bytes
    preprocess: str
    network: str
    spec: PreprocessSpec
    classes: int

    @classmethod
    def default(cls, arch: str, spec: PreprocessSpec) -> Classifier:
        """The ImageNet ResNet that ``make serve`` exports, under the names clients already call."""
        return cls(names.CLASSIFY, names.PREPROCESS, arch, spec, IMAGENET_CLASSES)

    @classmethod
    def named(cls, name: str, spec: PreprocessSpec, classes: int) -> Classifier:
        """A classifier of one's own (``python -m export classifier NAME``): every model under its name."""
        return cls(name, f"{name}_preprocess", f"{name}_network", spec, classes)

    @property
    def pixels(self) -> str:
        return f"{self.name}{PIXELS_SUFFIX}"

    @property
    def decode(self) -> str:
        return decode_model(self.spec.resize)

    @property
    def labelled(self) -> list[str]:
        """The models whose outputs name a ``label_filename``: Triton resolves it in each model's own folder."""
        return [self.name, self.pixels, self.network]

    def configs(self, batching: Batching, identity: bool = True) -> dict[str, dict[str, Any]]:
        """Every model the classifier runs, by name (``identity``: whether its network answers ``MODEL_ID``)."""
        models = [
            decode_config(self.decode, min_side=self.spec.resize),
            check_pixels_config(),
            self.preprocess_config(),
            self.network_config(batching, identity),
            self.entry_config(identity),
            self.pixels_config(identity),
        ]
        return {config["name"]: config for config in models}

    def preprocess_config(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": self.preprocess,
            "backend": "onnxruntime",
            "max_batch_size": IMAGE_MAX_BATCH,
            "input": [PIXELS],
            "output": [tensor(names.INPUT, "TYPE_FP32", [3, spec.crop, spec.crop])],
            "instance_group": [{"count": 2}],
            # Honoured by Triton's onnxruntime backend and by the local runtime's runner alike.
            "parameters": parameters(intra_op_thread_count=1, **SHRINK_ARENA),
            # A photo-sized input whose shorter side is already the resize target: the size the decode feeds it.
            "model_warmup": [warmup(names.IMAGE, "TYPE_UINT8", [spec.resize, spec.resize, 3], random_data=True)],
        }

    def network_config(self, batching: Batching, identity: bool = True) -> dict[str, Any]:
        crop = self.spec.crop
        config: dict[str, Any] = {
            "name": self.network,
            "backend": "onnxruntime",
            "max_batch_size": batching.max_batch_size,
            "input": [tensor(names.INPUT, "TYPE_FP32", [3, crop, crop])],
            "output": [
                tensor(names.LOGITS, "TYPE_FP32", [self.classes]),
                tensor(names.PROBABILITIES, "TYPE_FP32", [self.classes], label_filename=names.LABELS),
                *([tensor(names.MODEL_ID, "TYPE_STRING", [1])] if identity else []),
            ],
            "instance_group": [{"count": batching.instances}],
            # Every version folder present is served, so a new version (`python -m export --version N`) answers beside
            # the current one once loaded; dropping one is a reload with a `specific` policy (the admin API does it).
            "version_policy": {"all": {}},
            "model_warmup": [warmup(names.INPUT, "TYPE_FP32", [3, crop, crop], zero_data=True)],
        }
        if batching.enabled:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": batching.max_queue_delay_us,
                "preferred_batch_size": list(batching.preferred_batch_sizes),
                "default_queue_policy": {
                    "timeout_action": "REJECT",
                    "default_timeout_microseconds": batching.queue_timeout_us,
                    "allow_timeout_override": True,
                    "max_queue_size": batching.max_queue_size,
                },
            }
        return config

    def entry_config(self, identity: bool = True) -> dict[str, Any]:
        """The public entry point: the file's bytes, decoded at the scale the preprocessing needs. Its parameters
        say what it is, for the gateway's routes and listing (``Served.of``)."""
        decode = step(self.decode, {names.IMAGE: names.IMAGE}, {names.PIXELS: "pixels"})
        spec = self.spec
        about = parameters(
            kind=KIND,
            pixels=self.pixels,
            resize=spec.resize,
            crop=spec.crop,
            interpolation=spec.interpolation,
            mean=",".join(map(str, spec.mean)),
            std=",".join(map(str, spec.std)),
        )
        return self._ensemble(self.name, ENCODED, [decode], "pixels", identity, parameters=about)

    def pixels_config(self, identity: bool = True) -> dict[str, Any]:
        """For clients that already hold decoded BGR pixels: held to the upload rules first."""
        return self._ensemble(self.pixels, PIXELS, [check_step({})], "pixels", identity)

    def _ensemble(
        self, name: str, image: dict[str, Any], head: list[dict[str, Any]], pixels: str, identity: bool, **extra: Any
    ) -> dict[str, Any]:
        """``head`` turns the ensemble's IMAGE into the tensor ``pixels``; the preprocessing and the network follow.
        Labels on the output so clients can ask Triton for top-k (``class_count``)."""
        answers = {names.PROBABILITIES: names.PROBABILITIES} | ({names.MODEL_ID: names.MODEL_ID} if identity else {})
        outputs = [tensor(names.PROBABILITIES, "TYPE_FP32", [self.classes], label_filename=names.LABELS)]
        steps = [
            *head,
            step(self.preprocess, {names.IMAGE: pixels}, {names.INPUT: "preprocessed"}),
            step(self.network, {names.INPUT: "preprocessed"}, answers),
        ]
        if identity:
            outputs.append(tensor(names.MODEL_ID, "TYPE_STRING", [1]))
        return ensemble(name, [image], outputs, steps, **extra)


@dataclass(frozen=True)
class Served:
    """A classifier as Triton serves it, read back from its bytes entry point's config."""

    name: str
    pixels: str
    network: str
    classes: int
    spec: PreprocessSpec
    steps: tuple[Any, ...]  # the ensemble's steps (Triton's protobuf), for calls that must pin a network version

    @classmethod
    def of(cls, config: model_config_pb2.ModelConfig) -> Served | None:
        """None when the config is not a classifier's bytes entry point."""
        about = {key: value.string_value for key, value in config.parameters.items()}
        if about.get("kind") != KIND:
            return None
        spec = PreprocessSpec(
            resize=int(about["resize"]),
            crop=int(about["crop"]),
            mean=_triple(about["mean"]),
            std=_triple(about["std"]),
            interpolation=about["interpolation"],
        )
        steps = tuple(config.ensemble_scheduling.step)
        return cls(config.name, about["pixels"], steps[-1].model_name, int(config.output[0].dims[-1]), spec, steps)


def _triple(text: str) -> tuple[float, float, float]:
    first, second, third = (float(value) for value in text.split(","))
    return first, second, third


def exported_identity(repository: Path, name: str = names.CLASSIFY) -> Identity | None:
    """What the newest exported version of a classifier's network is (what Triton serves unless told otherwise),
    read from the repository on disk."""
    served = Served.of(read_config(repository / name / CONFIG_FILE))
    if served is None:
        return None
    folder = repository / served.network
    found = folder.iterdir() if folder.is_dir() else iter(())
    versions = sorted((int(p.name) for p in found if p.is_dir() and p.name.isdigit()), reverse=True)
    return next(filter(None, (Identity.read(folder / str(version)) for version in versions)), None)
