"""A synthetic stand-in for HAM10000, in the official layout, so the study runs offline.

The images are drawn, not sampled from real ones: a skin-coloured background
with vignetting and hairs, and a lesion whose colour, size, border
irregularity, texture and vessels depend on its class, with enough
within-class spread (and a share of atypical lesions without their class's
tell-tale sign) that a model must learn several cues. Every image has a
binary lesion mask, as in ``HAM10000_segmentations_lesion_tschandl``.
Several images show the same lesion from a slightly different view, about
1.34 images per lesion as in the real set, so lesion-level leakage can be
studied. The same seed gives the same bytes.
"""

from __future__ import annotations

import io
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from lesionscan.core.atomic import atomic_path
from lesionscan.core.classes import CLASSES, HAM10000_COUNTS
from lesionscan.core.errors import ParameterError
from lesionscan.data.ham10000 import IMAGE_DIRS, MASK_DIR, METADATA_FILE

IMAGE_DIR = IMAGE_DIRS[0]
MARKER = ".lesionscan-synthetic"  # in every folder this module writes: what may be replaced, what is not real

# Images per lesion in the real HAM10000 (7,470 lesions for 10,015 images):
# share of lesions with 1, 2, 3, 4, 5, 6 images.
_IMAGES_PER_LESION = np.array([5514, 1423, 420, 88, 20, 5], dtype=float)
_IMAGES_PER_LESION /= _IMAGES_PER_LESION.sum()

_LOCALIZATIONS = ("back", "lower extremity", "trunk", "upper extremity", "abdomen",
                  "face", "chest", "foot", "scalp", "neck", "hand", "ear", "genital", "acral")
_DX_TYPES = {"akiec": "histo", "bcc": "histo", "bkl": "histo", "df": "histo",
             "mel": "histo", "nv": "follow_up", "vasc": "consensus"}


@dataclass(frozen=True)
class _Look:
    """How a class tends to look: mean colour (RGB 0..1) and shape/texture traits."""

    colour: tuple[float, float, float]
    radius: float          # lesion radius as a fraction of the image's shorter side
    irregularity: float    # amplitude of the border's radial wobble
    softness: float        # border blur, in pixels at 100 px
    network: float         # strength of a reticular pigment network
    dots: int              # dark dots/globules
    white_dots: int        # milia-like white dots
    blue_grey: float       # strength of a blue-grey veil
    vessels: str           # "none", "arborizing" (branching) or "lacunae" (red-purple pools)
    scale: float           # white scale (rough keratin)
    white_centre: float    # central white patch


_LOOKS: dict[str, _Look] = {
    "nv": _Look((0.52, 0.34, 0.22), 0.24, 0.06, 2.0, 0.35, 2, 0, 0.0, "none", 0.0, 0.0),
    "mel": _Look((0.33, 0.20, 0.14), 0.32, 0.22, 2.5, 0.25, 8, 0, 0.55, "none", 0.0, 0.0),
    "bkl": _Look((0.62, 0.47, 0.32), 0.28, 0.14, 3.0, 0.0, 0, 7, 0.0, "none", 0.25, 0.0),
    "bcc": _Look((0.80, 0.58, 0.56), 0.24, 0.12, 3.5, 0.0, 0, 0, 0.35, "arborizing", 0.0, 0.0),
    "akiec": _Look((0.82, 0.48, 0.44), 0.27, 0.18, 6.0, 0.0, 0, 0, 0.0, "none", 0.6, 0.0),
    "vasc": _Look((0.70, 0.20, 0.30), 0.20, 0.08, 2.0, 0.0, 0, 0, 0.0, "lacunae", 0.0, 0.0),
    "df": _Look((0.63, 0.45, 0.33), 0.17, 0.07, 4.0, 0.3, 0, 0, 0.0, "none", 0.0, 0.7),
}

# Share of lesions drawn without their class's distinctive sign (dots, veil,
# vessels, scale, white centre): these can only be told apart by colour, size
# and border, which overlap between classes. Keeps the task from being trivial.
_ATYPICAL_SHARE = 0.25


def class_counts(n_images: int, min_share: float = 0.025, min_images: int = 12) -> dict[str, int]:
    """Images per class: HAM10000's proportions, with the rarest classes lifted to a floor.

    Dermatofibroma is 1.1 % of HAM10000, so a small set would have one or two
    test images of it and a balanced accuracy that is mostly noise; each
    class gets at least ``min_share`` of the images (and ``min_images``).
    The largest class (nv) absorbs the difference so the total is exact.
    """
    floor = max(min_images, round(min_share * n_images))
    if n_images < floor * len(CLASSES) * 2:
        raise ParameterError(  # n_images: the CLI checks --images and the study synthetic_images first
            f"n_images={n_images} is too small: need at least {floor * len(CLASSES) * 2} "
            f"so that every class has {floor} or more images to split")
    total = sum(HAM10000_COUNTS.values())
    counts = {dx: max(floor, round(n_images * c / total)) for dx, c in HAM10000_COUNTS.items()}
    counts["nv"] += n_images - sum(counts.values())
    return counts


def _lesion_sizes(n_images: int, rng: np.random.Generator) -> list[int]:
    """Split ``n_images`` into lesions with HAM10000's images-per-lesion distribution."""
    sizes: list[int] = []
    remaining = n_images
    while remaining > 0:
        k = int(rng.choice(len(_IMAGES_PER_LESION), p=_IMAGES_PER_LESION)) + 1
        k = min(k, remaining)
        sizes.append(k)
        remaining -= k
    return sizes


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled smoothly."""
    grid = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    img = Image.fromarray(((grid + 1) * 127.5).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0


def _lesion_params(dx: str, rng: np.random.Generator) -> dict:
    """Draw one lesion's own traits around its class's look (within-class spread)."""
    look = _LOOKS[dx]
    atypical = rng.random() < _ATYPICAL_SHARE
    sign = 0.0 if atypical else 1.0
    return {
        "dx": dx,
        "colour": np.clip(np.array(look.colour) * rng.lognormal(0, 0.15) + rng.normal(0, 0.035, 3), 0.05, 0.95),
        "radius": look.radius * rng.lognormal(0, 0.18),
        "irregularity": max(0.0, look.irregularity * rng.lognormal(0, 0.35)),
        "harmonics": rng.uniform(0, 2 * math.pi, size=6),
        "amplitudes": rng.dirichlet(np.ones(6)),
        "aspect": rng.uniform(0.8, 1.2),
        "softness": look.softness * rng.uniform(0.7, 1.4),
        "network": look.network * rng.uniform(0.5, 1.3),
        "dots": int(rng.poisson(look.dots * sign)),
        "white_dots": int(rng.poisson(look.white_dots * sign)),
        "blue_grey": look.blue_grey * sign * rng.uniform(0.5, 1.2),
        "vessels": look.vessels if not atypical else "none",
        "scale": look.scale * sign * rng.uniform(0.5, 1.3),
        "white_centre": look.white_centre * sign * rng.uniform(0.6, 1.2),
        "skin": np.clip(np.array([0.86, 0.68, 0.58]) * rng.uniform(0.85, 1.08) + rng.normal(0, 0.02, 3), 0.4, 1.0),
        "structure_seed": int(rng.integers(2**31)),
    }


def render(params: dict, width: int, height: int, view_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one view of a lesion: returns (RGB uint8 image, binary uint8 mask 0/255).

    The lesion's structures (dots, vessels) come from ``structure_seed`` so all
    views of a lesion share them; ``view_seed`` moves, rotates, rescales and
    relights the lesion and draws the hairs, as a second dermoscopy shot would.
    """
    view = np.random.default_rng(view_seed)
    structure = np.random.default_rng(params["structure_seed"])
    h, w = height, width
    short = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # Skin background: tinted, blotchy, darker at the corners (dermoscope vignette).
    skin = params["skin"] * view.uniform(0.92, 1.08)
    bg = skin[None, None, :] * (1 + 0.06 * _smooth_noise(view, h, w, 6)[..., None])
    r_corner = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    bg *= (1 - 0.35 * np.clip(r_corner - 0.75, 0, None))[..., None]

    # Lesion shape: a wobbly ellipse near the centre.
    cx = w / 2 + view.normal(0, 0.05) * w
    cy = h / 2 + view.normal(0, 0.05) * h
    rotation = view.uniform(0, 2 * math.pi)
    radius = params["radius"] * short * view.uniform(0.9, 1.1)
    dx_, dy_ = xx - cx, yy - cy
    theta = np.arctan2(dy_, dx_) + rotation
    dist = np.hypot(dx_ * params["aspect"], dy_ / params["aspect"])
    wobble = sum(a * np.cos((k + 2) * theta + phase)
                 for k, (a, phase) in enumerate(zip(params["amplitudes"], params["harmonics"])))
    edge = radius * (1 + params["irregularity"] * wobble)
    softness = params["softness"] * short / 100
    alpha = 1 / (1 + np.exp(-(edge - dist) / max(softness, 0.3)))
    inside = dist / np.maximum(edge, 1e-3)  # 0 at centre, 1 on the border

    # Lesion colour with internal texture.
    lesion = np.broadcast_to(params["colour"], (h, w, 3)).copy()
    lesion *= (1 + 0.10 * _smooth_noise(structure, h, w, 5))[..., None]
    lesion *= (0.85 + 0.25 * inside.clip(0, 1))[..., None]  # darker centre
    if params["network"] > 0:
        period = short / 9
        warp = 0.6 * period * _smooth_noise(structure, h, w, 8)
        u = (xx + warp) * math.cos(rotation) + (yy - warp) * math.sin(rotation)
        v = (yy + warp) * math.cos(rotation) - (xx - warp) * math.sin(rotation)
        net = np.abs(np.sin(u * math.pi / period) * np.sin(v * math.pi / period))
        lesion *= (1 - params["network"] * 0.45 * np.clip((net - 0.35) * 3, 0, 1))[..., None]
    if params["blue_grey"] > 0:
        veil = np.clip(_smooth_noise(structure, h, w, 4), 0, 1) * params["blue_grey"]
        lesion = lesion * (1 - veil[..., None]) + np.array([0.42, 0.48, 0.60]) * veil[..., None]
    if params["scale"] > 0:
        rough = np.clip(_smooth_noise(structure, h, w, 14) + 0.3 * view.normal(size=(h, w)), 0, 1)
        lesion = lesion + (0.95 - lesion) * (rough * params["scale"] * 0.8)[..., None]
    if params["white_centre"] > 0:
        centre = np.exp(-(dist / (0.35 * radius)) ** 2) * params["white_centre"]
        lesion = lesion + (np.array([0.93, 0.90, 0.88]) - lesion) * centre[..., None]

    img = bg * (1 - alpha[..., None]) + lesion * alpha[..., None]
    img *= view.uniform(0.9, 1.1)  # exposure
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)

    def inside_point(max_frac: float) -> tuple[float, float]:
        a, r = structure.uniform(0, 2 * math.pi), radius * max_frac * math.sqrt(structure.random())
        return cx + r * math.cos(a - rotation), cy + r * math.sin(a - rotation)

    dot = max(1.0, short / 60)
    for _ in range(params["dots"]):
        x, y = inside_point(0.85)
        s = dot * structure.uniform(0.6, 1.6)
        draw.ellipse([x - s, y - s, x + s, y + s], fill=(40, 25, 20))
    for _ in range(params["white_dots"]):
        x, y = inside_point(0.8)
        s = dot * structure.uniform(0.5, 1.2)
        draw.ellipse([x - s, y - s, x + s, y + s], fill=(235, 230, 215))
    if params["vessels"] == "arborizing":
        for _ in range(structure.integers(2, 5)):
            x, y = inside_point(0.6)
            angle = structure.uniform(0, 2 * math.pi)
            width_px = max(1, round(short / 70))
            for _ in range(3):  # a trunk that forks
                length = radius * structure.uniform(0.3, 0.6)
                x2, y2 = x + length * math.cos(angle), y + length * math.sin(angle)
                draw.line([x, y, x2, y2], fill=(170, 20, 35), width=width_px)
                x, y, angle = x2, y2, angle + structure.choice([-1, 1]) * structure.uniform(0.4, 0.9)
    elif params["vessels"] == "lacunae":
        for _ in range(structure.integers(5, 12)):
            x, y = inside_point(0.8)
            s = radius * structure.uniform(0.12, 0.28)
            tone = structure.uniform(0, 1)
            draw.ellipse([x - s, y - s, x + s, y + s],
                         fill=(int(150 - 60 * tone), int(20 + 10 * tone), int(50 + 70 * tone)))
    for _ in range(view.poisson(1.2)):  # hairs
        x, y = view.uniform(0, w), view.uniform(0, h)
        angle = view.uniform(0, 2 * math.pi)
        points = []
        for _ in range(6):
            points.append((x, y))
            x, y = x + short / 8 * math.cos(angle), y + short / 8 * math.sin(angle)
            angle += view.normal(0, 0.25)
        draw.line(points, fill=(45, 30, 25), width=max(1, round(short / 110)))

    pil = pil.filter(ImageFilter.GaussianBlur(radius=0.4))
    mask = ((alpha > 0.5) * 255).astype(np.uint8)
    return np.asarray(pil), mask


def _metadata_row(lesion_id: str, image_id: str, dx: str, rng: np.random.Generator) -> dict:
    """A plausible metadata row: age and site loosely depend on the class, as in the real set."""
    mean_age = {"akiec": 67, "bcc": 66, "bkl": 62, "df": 52, "mel": 61, "nv": 46, "vasc": 50}[dx]
    return {
        "lesion_id": lesion_id,
        "image_id": image_id,
        "dx": dx,
        "dx_type": _DX_TYPES[dx],
        "age": float(np.clip(5 * round(rng.normal(mean_age, 14) / 5), 5, 85)),
        "sex": rng.choice(["male", "female"]),
        "localization": _LOCALIZATIONS[int(rng.integers(len(_LOCALIZATIONS)))],
    }


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _replaceable(out_dir: str | Path, size: int) -> Path:
    """``out_dir``, if a synthetic dataset may be written there: new, or one written before (it has our marker)."""
    if size < 32:  # size: the CLI checks --size and the study synthetic_size first
        raise ParameterError(f"size={size} is too small: need at least 32 px")
    out = Path(out_dir)
    if out.exists() and not (out / MARKER).exists():
        instead = "choose a path that does not exist yet (it is created), or a synthetic dataset written before"
        if not out.is_dir():
            raise ParameterError(f"{out} is a file, not a folder: {instead}")
        if not any(out.iterdir()):
            raise ParameterError(f"{out} is an empty folder, not a LesionScan synthetic dataset: remove the folder "
                                 f"or {instead}")
        raise ParameterError(f"{out} exists and is not a LesionScan synthetic dataset (it has no "
                             f"{MARKER} marker): refusing to replace it; {instead}")
    return out


def generate(out_dir: str | Path, n_images: int = 700, size: int = 128, seed: int = 0,
             progress: bool = False) -> Path:
    """Write a synthetic dataset in the HAM10000 layout to ``out_dir``; return it.

    ``size`` is the image width in pixels (height is 3/4 of it, HAM10000's
    aspect ratio). The dataset is written to a temporary folder and renamed,
    so ``out_dir`` is either complete or absent. An existing ``out_dir`` is
    replaced only if it is itself a synthetic dataset (it has our marker).
    """
    out = _replaceable(out_dir, size)
    rng = np.random.default_rng(seed)
    width, height = size, round(size * 3 / 4)
    rows, arrays = [], []
    image_no, lesion_no = 0, 0
    for dx, count in class_counts(n_images).items():
        for n_views in _lesion_sizes(count, rng):
            lesion_no += 1
            params = _lesion_params(dx, rng)
            lesion_id = f"HAM_{lesion_no:07d}"
            for _ in range(n_views):
                image_no += 1
                rows.append(_metadata_row(lesion_id, f"ISIC_{image_no:07d}", dx, rng))
                arrays.append((params, int(rng.integers(2**31))))
    # Shuffle row order so image ids do not reveal the class.
    order = rng.permutation(len(rows))
    ids = [f"ISIC_{k + 1:07d}" for k in range(len(rows))]
    with atomic_path(out) as tmp:
        (tmp / IMAGE_DIR).mkdir(parents=True)
        (tmp / MASK_DIR).mkdir()
        meta = []
        for new_pos, old in enumerate(order):
            row = dict(rows[old], image_id=ids[new_pos])
            params, view_seed = arrays[old]
            image, mask = render(params, width, height, view_seed)
            (tmp / IMAGE_DIR / f"{row['image_id']}.jpg").write_bytes(_encode(image, "JPEG"))
            (tmp / MASK_DIR / f"{row['image_id']}_segmentation.png").write_bytes(_encode(mask, "PNG"))
            meta.append(row)
            if progress and (new_pos + 1) % 500 == 0:
                print(f"  synthetic: {new_pos + 1}/{len(order)} images", flush=True)
        frame = pd.DataFrame(meta).sort_values(["lesion_id", "image_id"], kind="stable")
        frame.to_csv(tmp / METADATA_FILE, index=False)
        (tmp / MARKER).write_text(f"n_images={n_images} size={size} seed={seed}\n")
        if out.exists():
            shutil.rmtree(out)
    return out


ISIC2018_IMAGES, ISIC2018_TRUTH = "ISIC2018_Task3_Test_Input", "ISIC2018_Task3_Test_GroundTruth"
ISIC2018_FIRST_ID = 9_000_001  # above every id ``generate`` gives, so the two sets never share an id by accident


def generate_isic2018(out_dir: str | Path, n_images: int = 200, size: int = 128, seed: int = 1,
                      progress: bool = False) -> Path:
    """Write a synthetic external test set in the ISIC 2018 Task 3 layout to ``out_dir``; return it.

    The same drawing as :func:`generate` (HAM10000's class proportions, the
    rarest lifted to a floor), one image per lesion, in the two folders the
    challenge's archives unpack to: ``ISIC2018_Task3_Test_Input/ISIC_*.jpg``
    and the one-hot ground truth ``ISIC2018_Task3_Test_GroundTruth/...csv``.
    Use another ``seed`` than the training set's so the images differ.
    """
    from lesionscan.data import isic2018

    out = _replaceable(out_dir, size)
    rng = np.random.default_rng(seed)
    width, height = size, round(size * 3 / 4)
    labels = [dx for dx, count in class_counts(n_images).items() for _ in range(count)]
    labels = [labels[k] for k in rng.permutation(len(labels))]
    codes = list(isic2018.COLUMNS.values())
    with atomic_path(out) as tmp:
        (tmp / ISIC2018_IMAGES).mkdir(parents=True)
        (tmp / ISIC2018_TRUTH).mkdir()
        lines = [",".join(isic2018.HEADER)]
        for k, dx in enumerate(labels):
            image_id = f"ISIC_{ISIC2018_FIRST_ID + k:07d}"
            image, _ = render(_lesion_params(dx, rng), width, height, int(rng.integers(2**31)))
            (tmp / ISIC2018_IMAGES / f"{image_id}.jpg").write_bytes(_encode(image, "JPEG"))
            lines.append(",".join([image_id] + ["1.0" if dx == code else "0.0" for code in codes]))
            if progress and (k + 1) % 500 == 0:
                print(f"  synthetic ISIC 2018: {k + 1}/{len(labels)} images", flush=True)
        (tmp / ISIC2018_TRUTH / f"{ISIC2018_TRUTH}.csv").write_text("\n".join(lines) + "\n")
        (tmp / MARKER).write_text(f"isic2018 n_images={n_images} size={size} seed={seed}\n")
        if out.exists():
            shutil.rmtree(out)
    return out
