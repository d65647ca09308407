"""Known models (resources/Models.json): names -> local weight files, checked by sha256.

Two kinds of entry:
- shipped: "file", relative to the registry file's folder (resources/ for the real one);
- user-downloaded: "url" (plus "filename", the name to save it under in the cache folder). The
  paper's checkpoints and MONAI model-zoo bundles are not ours to redistribute, and run-time
  downloads are not wanted, so the user fetches them and resolve_model says where to put them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .spec import KNOWN_ARCHS, ModelSpec, paper_unetr_spec

# Names resolved to TotalSegmentator's own weights folder (see families/nnunet.py); kept here,
# not imported from there, so that listing models never needs torch.
TOTALSEG_PRESETS = ("totalseg-fast",)

DEFAULT_REGISTRY = Path(__file__).resolve().parent.parent / "resources" / "Models.json"
CACHE_ENV = "FREQADV_MODEL_DIR"
# Named specs an entry may refer to, for weights files that carry no spec of their own.
SPEC_PRESETS = {"paper_unetr": paper_unetr_spec}
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")

_REQUIRED = ("name", "description", "arch", "sha256", "licence")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def list_models(registry: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """All registry entries (copies), validated; registry defaults to resources/Models.json."""
    return [dict(entry) for entry in _load(_registry_path(registry))]


def resolve_model(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    registry: str | os.PathLike | None = None,
) -> Path:
    """Local file (or bundle folder) for a registry name or a path.

    A registry name gives its shipped file, or its downloaded file in cache_dir (default: the
    FREQADV_MODEL_DIR environment variable, else ~/.cache/freqadvsegment/models); the sha256 is
    verified when the registry knows it. Anything else is taken as a path and must exist.
    Raises ValueError for an unknown name or a sha256 mismatch, FileNotFoundError for a missing
    file (saying where to download it and where to put it).
    """
    entries = {e["name"]: e for e in list_models(registry)}
    if isinstance(name_or_path, str) and name_or_path in TOTALSEG_PRESETS:
        from .families.nnunet import totalsegmentator_folder

        return totalsegmentator_folder(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in entries:
        entry = entries[name_or_path]
        path = _local_path(entry, _registry_path(registry), cache_dir)
        _verify(path, entry)
        return path
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        raise FileNotFoundError(f"model file or folder not found: {path}")
    raise ValueError(
        f"unknown model {str(name_or_path)!r}: not a file and not a registry name; known "
        f"models: {', '.join(entries)}"
    )


def registry_spec(name: str, registry: str | os.PathLike | None = None) -> ModelSpec | None:
    """The spec preset a registry entry names ("spec": "paper_unetr"), or None.

    Needed for weights files that carry no spec (the paper's .pt checkpoints).
    """
    entries = {e["name"]: e for e in list_models(registry)}
    preset = entries.get(name, {}).get("spec")
    return SPEC_PRESETS[preset]() if preset else None


def default_cache_dir() -> Path:
    """Where user-downloaded models live: $FREQADV_MODEL_DIR or ~/.cache/freqadvsegment/models."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "freqadvsegment" / "models")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (model files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- internals


def _registry_path(registry: str | os.PathLike | None) -> Path:
    return Path(registry) if registry is not None else DEFAULT_REGISTRY


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"could not read the model registry {path}: {error}") from None
    if not isinstance(entries, list):
        raise ValueError(f"model registry {path} must hold a JSON list of models")
    for index, entry in enumerate(entries):
        _check_entry(entry, f"{path} entry {index}")
    return entries


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a JSON object")
    where = f"{where} ({entry.get('name', '?')!r})"
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise ValueError(f"{where} lacks field(s) {missing}")
    if ("file" in entry) == ("url" in entry):
        raise ValueError(f"{where} needs exactly one of 'file' (shipped) or 'url' (downloaded)")
    if "url" in entry and not entry.get("filename"):
        raise ValueError(f"{where} has a 'url' but no 'filename' to store the download under")
    if entry["arch"] not in KNOWN_ARCHS:
        raise ValueError(f"{where} has arch {entry['arch']!r}; known: {list(KNOWN_ARCHS)}")
    if entry["sha256"] is not None and not _SHA256.match(str(entry["sha256"])):
        raise ValueError(f"{where} sha256 must be 64 lower-case hex digits or null")
    if entry.get("spec") is not None and entry["spec"] not in SPEC_PRESETS:
        raise ValueError(f"{where} names spec {entry['spec']!r}; known: {list(SPEC_PRESETS)}")


def _local_path(entry: dict[str, Any], registry: Path, cache_dir: str | os.PathLike | None) -> Path:
    if "file" in entry:
        path = registry.parent / entry["file"]
        if not path.exists():
            raise FileNotFoundError(
                f"model {entry['name']!r} should ship with FreqAdvSegment at {path}, but that "
                "file is missing: reinstall the package (or the Slicer extension)"
            )
        return path
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / entry["filename"]
    if not path.exists():
        raise FileNotFoundError(_download_message(entry, path, folder))
    return path


def _download_message(entry: dict[str, Any], path: Path, folder: Path) -> str:
    how = entry.get("download", "").replace("CACHE_DIR", str(folder))
    how = f" (e.g. {how})" if how else ""
    return (
        f"model {entry['name']!r} is not shipped with FreqAdvSegment and is not in the model "
        f"folder yet. Download it from {entry['url']}{how} and save it as {path}; or put it "
        f"elsewhere and pass that path, or point cache_dir / ${CACHE_ENV} at its folder."
    )


def _verify(path: Path, entry: dict[str, Any]) -> None:
    expected = entry["sha256"]
    if expected is None or path.is_dir():  # bundles are folders: nothing single to hash
        return
    actual = sha256_of(path)
    if actual != expected:
        source = entry.get("url") or "the FreqAdvSegment package"
        raise ValueError(
            f"{path} (model {entry['name']!r}) has sha256 {actual}, but the registry expects "
            f"{expected}: the file is damaged or a different version; get it again from {source}"
        )


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(MODEL_SUFFIXES)
