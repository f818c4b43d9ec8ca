"""The training cache: a model trained once is reused by every later run that would train it the same way.

An entry holds a trained model's four files (the saved model, its history,
its test predictions, its metrics) under a key made of everything that
determines them: the recipe (the parameters that reach data, split,
pipeline, model and training, :meth:`TrainingRecipe.fingerprint`), the data
checksum, the content of the split it trained and was tested on and of a
``weights=PATH`` file, the source of the code that trains and scores, and
the versions of the numerical libraries. Change any of those and the key
changes: the model is trained again. Presentation parameters
(``explain_per_class``, ``bootstrap_resamples``) are not in a recipe, so
changing them reuses every model.

Entries live in ``ARTIFACTS/.cache/training/KEY/``, outside every run folder
(a new run clears its folder, not the cache). An entry is written in a
temporary folder and renamed into place, so it is complete or absent; its
``entry.json`` lists each file's SHA-256, and an entry whose files are
missing or differ is reported in one line, removed and trained again, never
loaded. ``--set training_cache=false`` (``lesionscan study --no-cache``)
trains everything anew and leaves the cache alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from lesionscan.core import atomic
from lesionscan.core.parameters import TrainingRecipe

FORMAT = 1
# The source that trains and scores a model: a change in any of these files retrains.
CODE = ("data/images.py", "model/pipeline.py", "model/layers.py", "model/networks.py", "model/train.py",
        "analysis/evaluation.py", "study/experiments.py", "study/shared_backbone.py", "study/training_cache.py")
# Libraries whose version can change the numbers a training gives.
LIBRARIES = ("tensorflow", "keras", "numpy", "scikit-learn", "pillow")
# What a trained model's entry holds (study.results.TRAINED), each stored as NAME + suffix.
MODEL_FILES = {"model": ".keras", "history": ".csv", "predictions": ".csv", "metrics": ".json"}
FILES = tuple(MODEL_FILES)
ENTRY = "entry.json"


def code_hash(files: tuple[str, ...] = CODE) -> str:
    """SHA-256 over source files of the package (default :data:`CODE`), in order, each with its name."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"\0{name}\0".encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def key_inputs(recipe: TrainingRecipe, data_checksum: str, split_csv: bytes) -> dict:
    """Everything the key is made of, as JSON-able data (kept in the entry, so a reader sees why it matched)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    inputs = {"format": FORMAT, "recipe": recipe.fingerprint(), "data_checksum": data_checksum,
              "split_sha256": hashlib.sha256(split_csv).hexdigest(), "code_sha256": code_hash(),
              "versions": versions}
    if recipe.model.weights_file is not None:
        # A weights file enters by its content: the same path rewritten with other values trains again.
        inputs["weights_sha256"] = _file_sha256(recipe.model.weights_file)
    return inputs


def _file_sha256(path: Path) -> str:
    """SHA-256 of a (large, rarely changing) file, read once per size and modification time.

    A run computes many keys (the plan, each training, chapter 6's map keys), and a
    ResNet50 weights file is about 95 MB.
    """
    stat = path.stat()
    return _sha256_of_version(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_of_version(path: Path, size: int, mtime_ns: int) -> str:
    return _sha256(path)


def key_of(inputs: dict) -> str:
    """The entry's name: SHA-256 of the canonical JSON of its inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A complete, checked cache entry."""

    key: str
    folder: Path
    created: str
    seconds: float
    suffixes: dict

    def path(self, what: str) -> Path:
        return self.folder / f"{what}{self.suffixes[what]}"


class TrainingCache:
    """The cache folder of one artifacts directory; by default of trained models (:data:`MODEL_FILES`).

    ``files`` names what an entry holds and each file's suffix, so other
    costly results (chapter 6's map scores) are kept the same way.
    """

    def __init__(self, folder: str | os.PathLike, files: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.files = dict(MODEL_FILES if files is None else files)

    def lookup(self, key: str) -> Entry | None:
        """The entry of ``key`` if it is there and intact; a damaged one is reported, removed and None returned."""
        folder = self.folder / key
        if not folder.exists():
            return None
        why = _damage(folder, key, self.files)
        if why is None:
            info = json.loads((folder / ENTRY).read_text())
            return Entry(key, folder, info["created"], float(info.get("seconds", 0.0)), self.files)
        print(f"training cache: entry {key[:16]} is damaged ({why}); training again", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        return None

    def store(self, key: str, inputs: dict, files: dict[str, Path], seconds: float) -> Entry:
        """Copy ``files`` (by the names this cache holds) into a new entry, atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=self.folder))
        try:
            for what, suffix in self.files.items():
                link_or_copy(files[what], tmp / f"{what}{suffix}")
            created = datetime.now(UTC).isoformat(timespec="seconds")
            atomic.write_json(tmp / ENTRY, {"key": key, "inputs": inputs, "created": created,
                                            "seconds": round(float(seconds), 1),
                                            "files": {what: _sha256(tmp / f"{what}{suffix}")
                                                      for what, suffix in self.files.items()}})
            final = self.folder / key
            if final.exists():  # another run stored the same model meanwhile: keep theirs
                shutil.rmtree(tmp)
            else:
                os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.lookup(key)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (a model is about 100 MB), a copy otherwise.

    Writers in the run folder replace files by renaming, never edit them in
    place, so a shared inode stays what the entry's hash says; if it did not,
    the hash check would catch it.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _damage(folder: Path, key: str, files: dict[str, str]) -> str | None:
    """Why the entry in ``folder`` cannot be trusted, or None when every file is there with its recorded hash."""
    try:
        info = json.loads((folder / ENTRY).read_text())
    except (OSError, ValueError) as exc:
        return f"no readable {ENTRY}: {type(exc).__name__}"
    if info.get("key") != key or not isinstance(info.get("files"), dict):
        return f"{ENTRY} does not describe this key"
    for what, suffix in files.items():
        path = folder / f"{what}{suffix}"
        if not path.is_file():
            return f"{path.name} is missing"
        if _sha256(path) != info["files"].get(what):
            return f"{path.name} differs from the hash recorded when it was stored"
    return None
