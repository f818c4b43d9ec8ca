"""Images two datasets share, by id or by content: an external test image the run also trained on would leak.

An id match is exact. A content match must survive what happens to a
dermoscopy image between two releases (resizing: the 200x150 copy against
the 600x450 original; JPEG re-encoding), so it compares what is left of the
picture at 32 x 32 grey levels: first a 64-bit difference hash (a bit per
pair of neighbouring pixels of a 9 x 8 thumbnail: is the left one brighter)
to find candidates cheaply among every pair, then the mean absolute
difference of the 32 x 32 thumbnails to confirm one. Two different lesions
photographed alike can share a hash; they do not share a thumbnail (the
limits below say how close is a copy, as measured).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from lesionscan.core.errors import DataError
from lesionscan.data.images import to_rgb8

# Measured on 300 real HAM10000 images against copies enlarged to 600 x 450 and re-encoded as JPEG at quality 75:
# hashes at most 5 bits apart, thumbnails at most 1.22 grey levels apart (median 0.46). Two different synthetic
# images came as close as 5.2, and two photographs of one lesion in HAM10000 1.5 to 6. The limits keep a margin
# above the copies and stay below different pictures; a cropped or recoloured copy is not what this finds.
THUMBNAIL = 32
HASH_BITS_APART = 8         # candidates: difference hashes at most this many of 64 bits apart
THUMBNAIL_DIFFERENCE = 2.5  # confirmed: mean absolute grey-level difference (0..255) of the thumbnails at most this
_CHUNK = 256


def thumbnail(path) -> np.ndarray:
    """The image as a 32 x 32 grey uint8 array (decoded at reduced scale where JPEG allows: fast)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (4 * THUMBNAIL, 4 * THUMBNAIL))  # JPEG: decode at 1/2..1/8 scale, no slower path
            grey = to_rgb8(img, source=path).convert("L")
            return np.asarray(grey.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc


def thumbnails(paths, progress: str | None = None) -> np.ndarray:
    """(n, 32, 32) thumbnails of ``paths``, decoded in threads; ``progress`` names them in one line when done."""
    paths = list(paths)
    with ThreadPoolExecutor(max_workers=2) as pool:
        out = np.stack(list(pool.map(thumbnail, paths))) if paths else np.zeros((0, THUMBNAIL, THUMBNAIL), np.uint8)
    if progress:
        print(f"  {len(paths):,} {progress} fingerprinted", flush=True)
    return out


def difference_hash(thumbs: np.ndarray) -> np.ndarray:
    """One uint64 per thumbnail: bit i set where pixel i of the 9 x 8 reduction is brighter than its right
    neighbour."""
    small = np.stack([np.asarray(Image.fromarray(t).resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
                      for t in thumbs]) if len(thumbs) else np.zeros((0, 8, 9), np.int16)
    bits = (small[:, :, :-1] > small[:, :, 1:]).reshape(len(thumbs), 64)
    return (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def content_matches(thumbs_a: np.ndarray, thumbs_b: np.ndarray) -> list[tuple[int, int, float]]:
    """(index in a, index in b, thumbnail difference) of every confirmed pair, in a's order."""
    hash_a, hash_b = difference_hash(thumbs_a), difference_hash(thumbs_b)
    flat_b = thumbs_b.reshape(len(thumbs_b), -1).astype(np.int16)
    pairs = []
    for start in range(0, len(hash_a), _CHUNK):
        apart = np.bitwise_count(hash_a[start:start + _CHUNK, None] ^ hash_b[None, :])
        for i, j in zip(*np.nonzero(apart <= HASH_BITS_APART)):
            a = thumbs_a[start + i].reshape(-1).astype(np.int16)
            difference = float(np.abs(a - flat_b[j]).mean())
            if difference <= THUMBNAIL_DIFFERENCE:
                pairs.append((int(start + i), int(j), difference))
    return pairs


def shared_images(external: pd.DataFrame, own: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """Every external image that is also in the run's own data, by id or by content, with where it is there.

    ``external``: ``image_id, image_path``; ``own``: ``image_id, image_path`` and, if known, ``subset``.
    Columns: external_id, external_file, own_id, own_file, subset, match ("same id", "same content",
    or both), thumbnail_difference (NaN for an id match alone).
    """
    ext = external.reset_index(drop=True)
    mine = own.reset_index(drop=True)
    found: dict[tuple[int, int], dict] = {}
    position = {image_id: k for k, image_id in enumerate(mine["image_id"])}
    for i, image_id in enumerate(ext["image_id"]):
        if image_id in position:
            found[(i, position[image_id])] = {"match": "same id", "thumbnail_difference": np.nan}
    for i, j, difference in content_matches(thumbnails(ext["image_path"], "external images" if progress else None),
                                            thumbnails(mine["image_path"], "images of the run" if progress else None)):
        entry = found.setdefault((i, j), {"match": "same content", "thumbnail_difference": difference})
        if entry["match"] == "same id":
            entry.update(match="same id and content", thumbnail_difference=difference)
    rows = [{"external_id": ext.at[i, "image_id"], "external_file": str(ext.at[i, "image_path"]),
             "own_id": mine.at[j, "image_id"], "own_file": str(mine.at[j, "image_path"]),
             "subset": mine.at[j, "subset"] if "subset" in mine.columns else "", **entry}
            for (i, j), entry in sorted(found.items())]
    return pd.DataFrame(rows, columns=["external_id", "external_file", "own_id", "own_file", "subset", "match",
                                       "thumbnail_difference"])
