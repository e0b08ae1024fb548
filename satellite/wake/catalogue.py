"""Which wake-word models exist: the ones bundled in the engines' wheels, and users' files.

Read without importing the engines (config validation stays cheap): the wheels' model
folders are found through the import system's package metadata.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _micro_config_problem(path: Path) -> str | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        tflite = path.parent / config["model"]
        micro = config["micro"]
        float(micro["probability_cutoff"]), int(micro["sliding_window_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"model file {str(path)!r} is not a microWakeWord model config ({exc!r})"
    if not tflite.is_file():
        return f"model file {str(path)!r} names {tflite.name!r}, which is not next to it"
    return None


@dataclass(frozen=True)
class EngineModels:
    """Where an engine's bundled models live and what a user's own model file looks like."""

    package: str  # the engine's Python package, holding models/
    suffix: str  # a model file's suffix
    file_hint: str  # what a user's model is, in the user's words
    not_models: frozenset[str] = frozenset()  # files of models/ that are not wake words
    # Checks a user's file before the engine loads it (a clearer reason than the loader's).
    file_problem: Callable[[Path], str | None] | None = None


ENGINE_MODELS = {
    "micro": EngineModels(
        "pymicro_wakeword",
        ".json",
        "a microWakeWord .json file (ESPHome format, next to its .tflite)",
        file_problem=_micro_config_problem,
    ),
    "openwakeword": EngineModels(
        "pyopen_wakeword",
        ".tflite",
        "an openWakeWord .tflite file",
        frozenset({"melspectrogram", "embedding_model"}),
    ),
}


@functools.cache
def bundled_models(engine: str) -> dict[str, Path]:
    """Bundled model name -> its file, for an engine of ENGINE_MODELS (empty when the engine's
    package is not installed)."""
    kind = ENGINE_MODELS[engine]
    spec = importlib.util.find_spec(kind.package)
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return {
        path.stem: path
        for path in sorted(folder.glob(f"*{kind.suffix}"))
        if path.stem not in kind.not_models
    }


def model_file(engine: str, model: str) -> Path:
    """The file of a bundled name or of a user's path (validated by ``model_problem``)."""
    return bundled_models(engine).get(model) or Path(model).expanduser()


def model_problem(engine: str, model: str) -> str | None:
    """Why ``model`` cannot be used with ``engine``, listing what is available; None if fine."""
    kind = ENGINE_MODELS[engine]
    bundled = bundled_models(engine)
    if model in bundled:
        return None
    looks_like_path = "/" in model or model.endswith(kind.suffix)
    available = ", ".join(bundled) or f"none (is {kind.package} installed?)"
    if not looks_like_path:
        return (
            f"unknown {engine} model {model!r}; bundled models: {available}; "
            f"or give the path of {kind.file_hint}"
        )
    problem = _file_problem(engine, Path(model).expanduser())
    return f"{problem}; bundled models: {available}" if problem else None


def _file_problem(engine: str, path: Path) -> str | None:
    kind = ENGINE_MODELS[engine]
    if path.suffix != kind.suffix:
        return f"{str(path)!r} is not {kind.file_hint}"
    if not path.is_file():
        return f"model file {str(path)!r} does not exist"
    problem = kind.file_problem(path) if kind.file_problem is not None else None
    if problem:
        return problem
    from .probe import load_problem

    return load_problem(engine, str(path))


def phrase_from_name(name: str) -> str:
    """``okay_nabu`` -> ``Okay Nabu``."""
    return " ".join(word.capitalize() for word in name.replace("-", "_").split("_") if word)
