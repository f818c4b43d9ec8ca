"""Classify dermoscopy images with a saved LesionScan model, and show where it looked.

``lesionscan predict --model PATH IMAGE...`` runs :func:`run`: every input is
checked first (the model file, each image's header, each image's decoded
pixels, each output path: never over an input image or the model, never two
images to one file), every figure is rendered in memory, and only then is
anything written, all overlays or none, so a bad input leaves no file
behind. For each image it reports the seven class
probabilities, highest first, and writes ``<stem>.lesionscan.png`` beside the
image (or in ``--out DIR``): the image as the model sees it, the attention map
of each attention layer (attention models only) and the Grad-CAM of the
predicted class, each laid over the image.

The model is a research model from a reproducibility study, not a diagnostic
device; every output says so (:data:`DISCLAIMER`).

Images are untrusted input. :func:`check_image` reads only the header, accepts
the formats in :data:`IMAGE_FORMATS` (no PostScript, which Pillow would hand
to Ghostscript) and refuses images of more than :data:`MAX_PIXELS` pixels
before any pixel is decoded. Models are untrusted too: :func:`lesionscan.model.saving.load_model`
reads the archive's ``config.json`` before Keras builds anything, loads with
Keras' ``safe_mode`` (no Python lambdas), and then checks the model's shape.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from lesionscan.core import atomic
from lesionscan.core.classes import CLASS_NAMES, CLASSES, label
from lesionscan.core.errors import DataError, ParameterError
from lesionscan.explain import attention
from lesionscan.model import layers, saving

# Largest image accepted, in pixels (width x height, read from the header before decoding).
# HAM10000 images are 600 x 450 (0.27 MP) and phone or dermatoscope cameras take up to
# about 48 MP (8064 x 6048), so every real photograph passes. Decoded as RGB, 50 MP is
# 150 MB (RGBA 200 MB), which bounds the memory one image can claim; a crafted file
# whose header declares 30000 x 30000 (900 MP, 2.7 GB decoded) is refused unread.
# Pillow's own limit (Image.MAX_IMAGE_PIXELS, 89.5 MP) only warns, and errors at twice that.
MAX_PIXELS = 50_000_000
# Formats we decode (Pillow format names); Image.open tries no other plugin.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
OUTPUT_SUFFIX = ".lesionscan.png"
DISCLAIMER = ("Research model, not a diagnostic device: these outputs come from a model trained for a "
              "reproducibility study and must not be used to diagnose, screen or treat anyone.")
# Size (px, square) at which the image is shown in the explanation figure; at least the model's input size.
DISPLAY_SIZE = 224
_BATCH = 16
MAX_LISTED = 20  # images named in one error; the rest are counted


# ---------------------------------------------------------------------------------------------------------------
# Images


def check_image(path) -> tuple[int, int]:
    """Check that ``path`` is an image we can safely decode; return its (width, height).

    Reads the header only. Raises :class:`DataError`, naming the file, when it
    is missing, not a file, not an image in one of :data:`IMAGE_FORMATS`, or
    larger than :data:`MAX_PIXELS` pixels. Pillow's own decompression-bomb
    warning and error are turned into the same error.
    """
    from PIL import Image

    if str(path) == "":  # Path("") is ".", which would be reported as a folder named "."
        raise DataError("image '': an empty path; expected an image file")
    path = Path(path)
    if not path.exists():
        raise DataError(f"image {path}: " + ("a symbolic link that does not resolve (broken, or a loop)"
                                            if path.is_symlink() else "no such file"))
    if not path.is_file():
        raise DataError(f"image {path}: " + ("a folder, not an image file" if path.is_dir() else "not a regular file"))
    limit = f"the limit is {MAX_PIXELS:,} pixels ({MAX_PIXELS / 1e6:g} megapixels)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=list(IMAGE_FORMATS)) as img:
                width, height = (int(v) for v in img.size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image {path}: too large to decode safely ({exc}); {limit}") from exc
    except Exception as exc:  # UnidentifiedImageError, truncated header, plugin errors: all "not an image"
        raise DataError(f"image {path}: not a readable image (expected one of "
                        f"{', '.join(IMAGE_FORMATS)}; {type(exc).__name__}: {exc})") from exc
    if width < 1 or height < 1:
        raise DataError(f"image {path}: header declares an empty image ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise DataError(f"image {path}: {width}x{height} is {width * height:,} pixels, too large to decode "
                        f"safely; {limit}")
    return width, height


def check_images(paths) -> None:
    """:func:`check_image` on every path; one DataError naming every image refused (the first 20 of many)."""
    problems = []
    for path in paths:
        try:
            check_image(path)
        except DataError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise DataError(problems[0])
    if problems:
        shown = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"]
                                         if len(problems) > MAX_LISTED else [])
        raise DataError(f"{len(problems)} images rejected:\n  " + "\n  ".join(shown))


def load_checked(path, size: int) -> np.ndarray:
    """The image as a uint8 (size, size, 3) array, after :func:`check_image`; decoding errors name the file."""
    from PIL import Image

    from lesionscan.model import pipeline

    check_image(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return pipeline.load_image(path, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image {path}: too large to decode safely ({exc})") from exc


# ---------------------------------------------------------------------------------------------------------------
# Models


# ---------------------------------------------------------------------------------------------------------------
# Prediction


def class_probabilities(model, images_uint8: np.ndarray) -> np.ndarray:
    """(N, 7) class probabilities, run batch by batch in inference mode (no progress bar on stdout)."""
    from lesionscan.model import pipeline

    parts = [np.asarray(model(pipeline.preprocess(images_uint8[i:i + _BATCH]), training=False), dtype=np.float64)
             for i in range(0, len(images_uint8), _BATCH)]
    probs = np.concatenate(parts) if parts else np.zeros((0, len(CLASSES)))
    bad = ~np.isfinite(probs).all(axis=1) | (np.abs(probs.sum(axis=1) - 1.0) > 1e-3) | (probs < 0).any(axis=1)
    if bad.any():
        raise ParameterError(f"model {model.name!r} returned invalid probabilities (not finite, or not summing "
                             "to 1); is the model file damaged?")
    return probs


def predict(model, image_paths) -> list[dict]:
    """Class probabilities of each image, as one dict per image in input order.

    Every image is checked (:func:`check_image`) and decoded at the model's
    input size before the model runs, so a bad image raises
    :class:`DataError` naming it and nothing is returned. Each dict:
    ``image`` (the path as given), ``width`` and ``height`` (the file's),
    ``probabilities`` ({class code: probability}, highest first, summing to
    1), ``predicted`` (the top code), ``predicted_index`` (its index in
    :data:`CLASSES`), ``predicted_name`` and ``confidence`` (its probability).
    """
    paths = [Path(p) for p in image_paths]
    sizes = [check_image(p) for p in paths]  # every header first: a bomb is refused before anything decodes
    size = saving.input_size(model)
    images = np.stack([load_checked(p, size) for p in paths]) if paths else np.zeros((0, size, size, 3), np.uint8)
    probs = class_probabilities(model, images)
    results = []
    for path, (width, height), row in zip(paths, sizes, probs):
        order = sorted(range(len(CLASSES)), key=lambda k: (-row[k], k))
        top = order[0]
        results.append({
            "image": str(path), "width": width, "height": height,
            "probabilities": {CLASSES[k]: float(row[k]) for k in order},
            "predicted": CLASSES[top], "predicted_index": int(top), "predicted_name": CLASS_NAMES[CLASSES[top]],
            "confidence": float(row[top]),
        })
    return results


# ---------------------------------------------------------------------------------------------------------------
# Explanations


def _attention_title(model, layer: str, predicted_index: int) -> str:
    from lesionscan.model import networks

    if isinstance(model.get_layer(layer), layers.ClassAttention):
        return f"class attention ({CLASSES[predicted_index]})"
    if layer == layers.STAGE4_ATTENTION_LAYER:
        return "attention map (stage 4)"
    if layers.STAGE4_ATTENTION_LAYER in networks.attention_layers(model):  # multiscale: name both stages
        return "attention map (stage 5)"
    return "attention map"


def panel_titles(model, predicted_index: int) -> list[str]:
    """Titles of the panels :func:`write_explanation` draws: the image, one per attention layer, Grad-CAM."""
    from lesionscan.model import networks

    titles = ["image (as the model sees it)"]
    titles += [_attention_title(model, layer, predicted_index) for layer in networks.attention_layers(model)]
    return titles + [f"Grad-CAM ({CLASSES[predicted_index]})"]


def panel_maps(model, image_paths, predicted_indices) -> list[dict[str, np.ndarray]]:
    """Per image, {panel title: map in [0, 1] at the model's input size} for every panel after the image.

    The attention map of each attention layer (the sum over heads; class
    attention: the predicted class's map), then Grad-CAM of the predicted
    class on the model's default layer. All images go through the model
    together (Grad-CAM copies the model once per call, not once per image).
    """
    from lesionscan.explain import gradcam
    from lesionscan.model import networks, pipeline

    paths = [Path(p) for p in image_paths]
    indices = np.asarray(predicted_indices, dtype=int).reshape(-1)
    if len(indices) != len(paths):
        raise ParameterError(f"got {len(indices)} class indices for {len(paths)} images")
    size = saving.input_size(model)
    batch = pipeline.preprocess(np.stack([load_checked(p, size) for p in paths]))
    columns: dict[str, list[np.ndarray]] = {}
    titles = [panel_titles(model, int(k))[1:] for k in indices]
    for j, layer in enumerate(networks.attention_layers(model)):
        class_index = indices if isinstance(model.get_layer(layer), layers.ClassAttention) else None
        maps = attention.attention_maps(model, batch, upsample_to=(size, size), layer=layer, class_index=class_index)
        columns[j] = [gradcam.scaled(m) for m in maps]
    cams = gradcam.gradcam(model, batch, indices)
    columns[len(columns)] = [np.clip(c, 0.0, 1.0) for c in cams]
    return [{titles[i][j]: columns[j][i] for j in range(len(columns))} for i in range(len(paths))]


def explanation_path(image_path, out_dir=None) -> Path:
    """Where the explanation of ``image_path`` goes: ``<stem>.lesionscan.png`` in ``out_dir`` or beside the image."""
    image_path = Path(image_path)
    folder = Path(out_dir) if out_dir is not None else image_path.parent
    return folder / f"{image_path.stem}{OUTPUT_SUFFIX}"


def render_explanation(model, image_path, predicted_index, *, confidence=None, maps=None) -> bytes:
    """The explanation figure of one image as PNG bytes, in memory, so a caller can write all figures or none.

    Panels (see :func:`panel_titles`): the image resized to a square as the
    model sees it, the attention map of each attention layer (none for the
    baseline), and Grad-CAM of ``predicted_index``, each overlaid in viridis
    and scaled to its own range. The title names the predicted class and
    carries :data:`DISCLAIMER`; the PNG's text chunks "Panels" (titles joined
    by " | ") and "Disclaimer" record the same. ``maps`` (one element of
    :func:`panel_maps`) skips recomputing the maps.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lesionscan.explain.gradcam import overlay

    image_path = Path(image_path)
    predicted_index = int(predicted_index)
    if not 0 <= predicted_index < len(CLASSES):
        raise ParameterError(f"predicted_index {predicted_index}: expected 0..{len(CLASSES) - 1}")
    if maps is None:
        maps = panel_maps(model, [image_path], [predicted_index])[0]
    titles = panel_titles(model, predicted_index)
    if list(maps) != titles[1:]:
        raise ParameterError(f"maps have panels {list(maps)}; expected {titles[1:]}")
    image = load_checked(image_path, max(DISPLAY_SIZE, saving.input_size(model)))

    code = CLASSES[predicted_index]
    headline = f"{image_path.name}: {label(code)}"
    if confidence is not None:
        headline += f", probability {float(confidence):.2f}"
    fig = Figure(figsize=(2.7 * len(titles), 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(titles), squeeze=False)[0]
    panels = [image] + [overlay(image, heat, alpha=0.5, cmap="viridis") for heat in maps.values()]
    for ax, title, panel in zip(axes, titles, panels):
        ax.imshow(panel)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{headline}\n{DISCLAIMER.split(':')[0]}", fontsize=10.5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white",
                metadata={"Software": "lesionscan", "Title": headline, "Panels": " | ".join(titles),
                          "Disclaimer": DISCLAIMER})
    return buffer.getvalue()


def write_explanation(model, image_path, out_dir=None, predicted_index=None, *, confidence=None,
                      maps=None) -> Path:
    """Write the explanation figure of one image (:func:`render_explanation`) as PNG, atomically; return its path.

    ``out_dir`` None writes beside the image; a missing ``out_dir`` is
    created. ``predicted_index`` None predicts it. An existing file of that
    name is replaced; the image itself, or a folder of that name, is refused.
    """
    image_path = Path(image_path)
    target = _check_destinations([image_path], out_dir)[0]
    if predicted_index is None:
        result = predict(model, [image_path])[0]
        predicted_index, confidence = result["predicted_index"], result["confidence"]
    data = render_explanation(model, image_path, predicted_index, confidence=confidence, maps=maps)
    _write_all([(target, data, image_path)])
    return target


# ---------------------------------------------------------------------------------------------------------------
# The command


def _entry(path) -> Path:
    """The absolute name of the directory entry ``path``: its folder resolved, its last part kept (a link stays one)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _names(path) -> set[Path]:
    """The entry ``path`` names and the file it resolves to: writing either can change what ``path`` reads."""
    return {_entry(path), Path(os.path.realpath(path))}


def _elsewhere(out_dir) -> str:
    """What to do instead, in the options the user has: --out if they did not give it, another folder if they did."""
    return "pass --out DIR to write the overlays elsewhere" if out_dir is None else "choose another --out folder"


def _writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder`` (an existing folder)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _check_out_dir(out_dir: Path) -> Path:
    """The existing folder ``--out`` is in or under (created later, after every check); refuses what cannot be one."""
    if not os.path.exists(out_dir):
        if os.path.islink(out_dir):
            raise DataError(f"--out {out_dir}: a symbolic link that does not resolve (broken, or a loop); "
                            "expected a folder")
        existing = out_dir.parent
        while not os.path.lexists(existing):
            existing = existing.parent
        if not existing.is_dir():
            what = "a file, not a folder" if existing.exists() else "a symbolic link that does not resolve"
            raise DataError(f"--out {out_dir}: cannot create it, {existing} is {what}")
        return existing
    if not out_dir.is_dir():
        raise DataError(f"--out {out_dir}: is a file, not a folder; expected a folder to write the overlays into "
                        "(created if missing)")
    return out_dir


def _check_target(target: Path, image: Path, out_dir) -> None:
    """Refuse an overlay name longer than its file system allows, or a folder or special file where it goes."""
    existing = target.parent
    while not existing.is_dir():  # the nearest existing folder (what is not a folder: see _check_out_dir)
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):  # the file system does not say: the write itself will tell
        limit = None
    size = len(os.fsencode(target.name))
    if limit is not None and size > limit:
        raise DataError(f"{target}: the overlay's file name is {size} bytes, longer than the file system allows "
                        f"({limit}); rename {image}")
    if target.exists() and not target.is_file():
        what = "is a folder" if target.is_dir() else "is not a regular file"
        raise DataError(f"{target}: {what}, where the overlay of {image} would be written; remove it or "
                        f"{_elsewhere(out_dir)}")


def _check_destinations(image_paths, out_dir, model_path=None) -> list[Path]:
    """Output path per image, checked before anything is written.

    Refuses an overlay that would replace an input image or the model file,
    two images whose overlays would be one file, a folder or an overlong
    name where an overlay goes, and a folder that cannot be written or
    created. The same image given twice shares one overlay.
    """
    if out_dir is not None and str(out_dir) == "":
        raise DataError("--out '': an empty path; expected a folder to write the overlays into")
    out = Path(out_dir) if out_dir is not None else None
    folders = {_check_out_dir(out)} if out is not None else set()
    inputs = {name: (f"the input image {p}") for p in image_paths for name in _names(p)}
    if model_path is not None:
        inputs.update({name: f"the model file {model_path}" for name in _names(model_path)})
    targets, writers = [], {}
    for p in map(Path, image_paths):
        target = explanation_path(p, out)
        clash = next((inputs[name] for name in _names(target) if name in inputs), None)
        if clash:
            raise DataError(f"the overlay of {p} would be written to {target}, which is {clash}; rename the "
                            f"image or {_elsewhere(out_dir)}")
        first = writers.setdefault(_entry(target), p)
        if os.path.realpath(first) != os.path.realpath(p):
            raise DataError(f"images {first} and {p} would both write {target}; rename one, or run them "
                            "separately")
        _check_target(target, p, out_dir)
        if out is None:
            folders.add(target.parent)
        targets.append(target)
    for folder in folders:
        if not _writable(folder):
            problem = (f"--out {out}: cannot create it in {folder}" if out is not None and folder != out
                       else f"{'--out ' if out is not None else ''}{folder}: cannot write the overlays there")
            raise DataError(f"{problem} (no permission); {_elsewhere(out_dir)}")
    return targets


def _write_all(files) -> None:
    """Write every (target, PNG bytes, image) or none (:func:`lesionscan.core.atomic.write_all`).

    Any failure leaves no overlay, temporary file or created folder behind
    and raises :class:`DataError` naming the path.
    """
    try:
        atomic.write_all([(target, data) for target, data, _ in files])
    except atomic.WriteAllError as exc:
        raise DataError(f"{exc.path}: could not write the overlay ({exc.reason}); nothing was written") from exc


def run(model_path, image_paths, out_dir=None) -> dict:
    """The ``predict`` command: check every input, then predict and write one explanation PNG per image.

    Order: the model file's archive and config, every image header, the
    output paths (:func:`_check_destinations`), the full model load and
    checks, every image decoded, the predictions and maps, every figure
    rendered in memory; only then are files written, all or none
    (:func:`_write_all`, which also creates ``out_dir``). Returns a report:
    ``disclaimer``, ``model`` (path, kind, input size), ``max_pixels`` and
    ``results`` (:func:`predict`'s dicts plus ``explanation``, the PNG's
    path, and ``panels``, its panel titles).
    """
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise ParameterError("no images given")
    saving.check_archive(Path(model_path))
    check_images(image_paths)
    targets = _check_destinations(paths, out_dir, model_path)
    model = saving.load_model(model_path)
    results = predict(model, paths)
    maps = panel_maps(model, paths, [r["predicted_index"] for r in results])
    figures = [(target, render_explanation(model, path, result["predicted_index"],
                                           confidence=result["confidence"], maps=image_maps), path)
               for result, path, target, image_maps in zip(results, paths, targets, maps)]
    _write_all(figures)
    for result, target in zip(results, targets):
        result["explanation"] = str(target)
        result["panels"] = panel_titles(model, result["predicted_index"])
    return {"disclaimer": DISCLAIMER, "model": {"path": str(model_path), "kind": model.name,
                                                "input_size": saving.input_size(model)},
            "max_pixels": MAX_PIXELS, "results": results}


def format_text(results) -> str:
    """Readable report: per image the predicted class and every probability, highest first; then the disclaimer.

    ``results``: :func:`predict`'s list (or :func:`run`'s report, whose results are used).
    """
    if isinstance(results, dict):
        results = results["results"]
    width = max(len(label(dx)) for dx in CLASSES)
    lines = []
    for result in results:
        lines.append(f"{result['image']}: {label(result['predicted'])}, probability {result['confidence']:.3f}")
        for dx, p in result["probabilities"].items():
            lines.append(f"  {label(dx):<{width}}  {p:.3f}")
        if result.get("explanation"):
            lines.append(f"  explanation: {result['explanation']} ({', '.join(result['panels'][1:])})")
        lines.append("")
    lines.append(DISCLAIMER)
    return "\n".join(lines)


def format_json(report: dict) -> str:
    """:func:`run`'s report as JSON (probabilities in descending order, as in the report)."""
    return json.dumps(report, indent=2)


