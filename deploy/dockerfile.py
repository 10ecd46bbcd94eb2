"""A small Dockerfile reader (no Docker engine here): instructions, stages, base images, COPY sources.

``make verify-images`` reads which source folders an image copies from it; the static tests read the rest.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM (global ARGs before the first FROM are left out)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """The ARG defaults declared before the first FROM (those FROM lines and ``ARG NAME`` re-imports see)."""
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    return defaults


def base_images(instructions: list[Instruction]) -> list[str]:
    """FROM images with global ARG defaults substituted; references to earlier stages left out."""
    defaults = global_args(instructions)
    images: list[str] = []
    stage_names: set[str] = set()
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], words[0])
            if image not in stage_names:
                images.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stage_names.add(words[2])
    return images


def exec_form(arguments: str) -> Any:
    """An exec-form (JSON array) CMD or ENTRYPOINT."""
    return json.loads(arguments)


def copied_sources(instructions: list[Instruction]) -> list[str]:
    """What the build context gives the image: every COPY source that is not another stage's (``--from=``)."""
    return [
        source
        for instruction in instructions
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments
        for source in shlex.split(instruction.arguments)[:-1]
    ]
