"""One rule for turning an image file's pixels into 8-bit RGB, shared by training, ``data check`` and ``predict``.

Pillow's own ``convert("RGB")`` is right for 8-bit modes but clips 16-bit
grey (mode I;16 and friends) at 255, so a 16-bit PNG came out solid white.
Every decoder in the package goes through :func:`to_rgb8`, so a file reads the
same wherever it is read.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from lesionscan.core.errors import DataError

# Modes Pillow converts to RGB exactly as meant: 1-bit (0/255), grey, palette (with or
# without transparency), colour with or without alpha, CMYK, and its YCbCr/LAB/HSV transforms.
# 16-bit colour PNGs need nothing more: Pillow opens them as RGB/RGBA (and 16-bit grey+alpha
# as RGBA) already reduced to their high byte, the same >> 8 as 16-bit grey below.
CONVERTED_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")
# 16-bit grey in any byte order; "I" (32-bit integer) is how some readers hand 16-bit grey over.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
REFUSED_MODES = {
    "F": "32-bit floating point, whose scale (0..1 or 0..255 or other) the file does not record",
}
EXIF_ORIENTATION = 0x0112


def to_rgb8(image: Image.Image, source=None) -> Image.Image:
    """The image as 8-bit RGB (mode RGB), by one rule for every mode Pillow reads.

    - 8-bit modes (1, L, LA, P, RGB, RGBA, CMYK, ...): Pillow's conversion.
    - 16-bit grey (I;16, I;16B, I;16L, I;16N, and I holding 0..65535): each
      value >> 8, its high byte (65535 -> 255, 256 -> 1, 255 -> 0), which is
      what Pillow does to 16-bit colour PNGs, so grey and colour agree.
      Mode I with values outside 0..65535 is refused: no scale is known.
    - Alpha (LA, RGBA, PA, P with transparency) is dropped and the colour kept
      as stored, not composited: a skin photograph has no meaningful
      transparency, and compositing would paint in a background colour (white?
      black?) that no training image has. Pillow's convert("RGB") does the same.
    - An EXIF orientation is applied, so the model sees the picture upright,
      as every viewer shows it (phone photographs are often stored sideways).
    - Float (F), other modes, and images with several frames (animated GIF/PNG/
      WebP, multi-page TIFF) are refused with a DataError naming the mode or the
      frame count: which scale or which frame is meant is not in the file. A
      JPEG's extra MPO pictures (phone previews) are not frames of it: its
      primary picture is read.

    ``source`` (a path) names the file in errors.
    """
    where = f"image {source}: " if source is not None else ""
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        raise DataError(f"{where}{image.format or 'the'} file holds {frames} frames (an animation or a "
                        "multi-page file); expected a single still image")
    mode = image.mode
    if mode in REFUSED_MODES:
        raise DataError(f"{where}pixel mode {mode} ({REFUSED_MODES[mode]}) is not supported; "
                        "save it as 8- or 16-bit grey or colour")
    if mode not in CONVERTED_MODES + SIXTEEN_BIT_MODES:
        raise DataError(f"{where}pixel mode {mode} is not supported; expected one of "
                        f"{', '.join(CONVERTED_MODES + SIXTEEN_BIT_MODES)}")
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if mode in SIXTEEN_BIT_MODES:
        return Image.fromarray(_high_byte(np.asarray(image), mode, where)).convert("RGB")
    return image.convert("RGB")


def _high_byte(values: np.ndarray, mode: str, where: str) -> np.ndarray:
    """16-bit grey values as 8-bit (>> 8); refuses mode I values that are not 16-bit."""
    if mode == "I" and values.size and (values.min() < 0 or values.max() > 0xFFFF):
        raise DataError(f"{where}pixel mode I holds values {values.min()}..{values.max()}, outside the 16-bit "
                        "range 0..65535, so their scale is unknown; save it as 8- or 16-bit")
    return (values.astype(np.uint32) >> 8).astype(np.uint8)
