"""Builders the unit tests share: the project root and predictions frames.

Importable from any test as ``from factories import ...`` (``tests/`` is on ``sys.path``, see conftest.py).
Synthetic data sets, which cost time to write, come from the session fixture ``synthetic_set`` in conftest.py.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES

ROOT = Path(__file__).resolve().parent.parent
"""The project checkout: lesionscan/, notebooks/, book/, _config.yml."""
SMOKE_EXTERNAL_IMAGES = 200
"""Images of the synthetic ISIC 2018 set the shared smoke study (``smoke_run``) names as its external test set."""


def _ids(n: int) -> list[str]:
    return [f"i{i}" for i in range(n)]


def make_predictions(true: Sequence, predicted: Sequence | None = None, confidence: float | Sequence[float] = 0.8,
                     ids: Sequence | None = None) -> pd.DataFrame:
    """A predictions frame: image i predicted ``predicted[i]`` (default: its true class) with probability
    ``confidence[i]`` (one number for all, or one per image; > 1/7), the rest shared evenly by the other six
    classes. Image ids are ``ids`` or i0, i1, ..."""
    true = list(true)
    predicted = true if predicted is None else list(predicted)
    if np.ndim(confidence) == 0:
        confidence = [confidence] * len(true)
    probs = np.zeros((len(true), len(CLASSES)))
    for i, (dx, p) in enumerate(zip(predicted, confidence)):
        probs[i] = (1.0 - p) / (len(CLASSES) - 1)
        probs[i, CLASSES.index(dx)] = p
    return evaluation.predictions_frame(_ids(len(true)) if ids is None else ids, true, probs)


def predictions_from_rows(rows: Sequence[tuple[str, str, str, float]]) -> pd.DataFrame:
    """``make_predictions`` from (image_id, true, predicted, confidence of the prediction) rows."""
    ids, true, predicted, confidence = zip(*rows)
    return make_predictions(true, predicted, confidence, ids=ids)


def random_predictions(seed: int, supports: Mapping[str, int], skill: float = 1.0,
                       decimals: int | None = None) -> pd.DataFrame:
    """Simulated test predictions with the given class supports (images of each class, in that order).

    Scores are a softmax of standard normal logits with ``skill`` added to the true class's, so a larger
    skill gives a better model. ``decimals`` rounds the probabilities to force tied scores.
    """
    rng = np.random.default_rng(seed)
    y = np.concatenate([[CLASSES.index(dx)] * n for dx, n in supports.items()])
    logits = rng.normal(size=(len(y), len(CLASSES)))
    logits[np.arange(len(y)), y] += skill
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    if decimals is not None:
        probs = np.round(probs, decimals)
        probs[:, -1] = 1.0 - probs[:, :-1].sum(axis=1)
        probs = np.clip(probs, 0, None)
        probs /= probs.sum(axis=1, keepdims=True)
    return evaluation.predictions_frame(_ids(len(y)), y, probs)


def png_bytes(pixels: np.ndarray, bit_depth: int = 16) -> bytes:
    """A PNG file holding ``pixels`` exactly, written by hand because Pillow cannot write 16-bit colour.

    ``pixels``: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA, integers that fit
    ``bit_depth`` (8 or 16). Rows are stored unfiltered in one zlib stream, as the PNG format allows.
    """
    import struct
    import zlib

    pixels = np.asarray(pixels)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = pixels.astype(">u2" if bit_depth == 16 else "u1").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def folder_state(folder: Path, by_stat: tuple[str, ...] = ()) -> dict:
    """Every file under ``folder``: its content's hash, or (size, mtime) for suffixes in ``by_stat`` (large models).

    What "left untouched" is checked against.
    """
    import hashlib

    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) if p.suffix in by_stat
            else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def isic2018_folder(folder: Path, labels: Mapping[str, str], images: Sequence[str] | None = None,
                    truth_dir: str = "ISIC2018_Task3_Test_GroundTruth", image_dir: str = "ISIC2018_Task3_Test_Input",
                    rows: Sequence[str] = (), size: tuple[int, int] = (16, 12)) -> Path:
    """An ISIC 2018 Task 3 folder as the two official archives unpack: ``labels`` image id -> class code.

    ``images``: the ids given a JPEG (default: every labelled one), each of random pixels seeded by its
    position; ``rows``: raw ground-truth lines appended after the labels' rows.
    """
    from PIL import Image

    from lesionscan.data import isic2018

    (folder / image_dir).mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(images if images is not None else labels):
        pixels = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / image_dir / f"{image_id}.jpg")
    codes = list(isic2018.COLUMNS.values())
    lines = [",".join(isic2018.HEADER)]
    lines += [",".join([image_id] + ["1.0" if dx == code else "0.0" for code in codes])
              for image_id, dx in labels.items()]
    lines += list(rows)
    (folder / truth_dir).mkdir(parents=True, exist_ok=True)
    (folder / truth_dir / f"{truth_dir}.csv").write_text("\n".join(lines) + "\n")
    return folder
