"""Tests for lesionscan.data.images: every mode Pillow reads decodes to the expected 8-bit RGB, or is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lesionscan.core.errors import DataError
from lesionscan.data.images import to_rgb8

from factories import png_bytes

# 16-bit values chosen so that clipping (the old bug: all > 255 became 255) and >> 8 disagree.
SIXTEEN = np.array([[0, 255, 256, 0x1234], [0x7FFF, 0x8000, 0xFF00, 0xFFFF]], dtype=np.uint16)
SIXTEEN_HIGH = (SIXTEEN >> 8).astype(np.uint8)  # [[0, 0, 1, 18], [127, 128, 255, 255]]
GREY = np.array([[0, 1, 127, 128], [200, 254, 255, 64]], dtype=np.uint8)
RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]],
                [[255, 255, 255], [0, 0, 0], [128, 64, 32], [1, 2, 3]]], dtype=np.uint8)
ALPHA = np.array([[0, 255, 128, 1], [255, 0, 7, 255]], dtype=np.uint8)


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def decoded(path) -> np.ndarray:
    with Image.open(path) as image:
        out = to_rgb8(image, source=path)
        assert out.mode == "RGB"
        return np.asarray(out)


def save(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def written(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def palette_image() -> tuple[Image.Image, np.ndarray]:
    """A P image whose index k is colour (40k, 255 - 40k, 7k) mod 256; returns it and the expected RGB."""
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    palette = (np.array([[40 * k, 255 - 40 * k, 7 * k] for k in range(256)]) % 256).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.reshape(-1).tolist())
    return image, palette[index]


def cmyk_expected(cmyk: np.ndarray) -> np.ndarray:
    """Pillow's CMYK -> RGB: R = (255 - C)(255 - K) / 255 (and so on), rounded as its MULDIV255 does."""
    product = (255 - cmyk[..., :3].astype(int)) * (255 - cmyk[..., 3:4].astype(int)) + 128
    return ((product + (product >> 8)) >> 8).astype(np.uint8)


@pytest.mark.parametrize("case", ["L", "1", "RGB", "RGBA", "LA", "P", "P-transparent", "CMYK",
                                  "I;16 png", "I;16 tiff", "I;16B tiff", "I tiff", "16-bit grey png",
                                  "16-bit grey+alpha png", "16-bit RGB png", "16-bit RGBA png"])
def test_every_mode_decodes_to_the_expected_8_bit_rgb(tmp_path, case):
    if case == "L":
        path, expected = save(tmp_path, Image.fromarray(GREY, "L"), "a.png"), grey_rgb(GREY)
    elif case == "1":
        bits = GREY >= 128
        path, expected = save(tmp_path, Image.fromarray(bits), "a.png"), grey_rgb(bits.astype(np.uint8) * 255)
    elif case == "RGB":
        path, expected = save(tmp_path, Image.fromarray(RGB, "RGB"), "a.png"), RGB
    elif case == "RGBA":  # alpha dropped, colour kept even where fully transparent
        path = save(tmp_path, Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"), "a.png")
        expected = RGB
    elif case == "LA":
        path, expected = save(tmp_path, Image.fromarray(np.dstack([GREY, ALPHA]), "LA"), "a.png"), grey_rgb(GREY)
    elif case in ("P", "P-transparent"):
        image, expected = palette_image()
        path = save(tmp_path, image, "a.png", **({"transparency": 2} if case == "P-transparent" else {}))
    elif case == "CMYK":
        cmyk = np.dstack([RGB, GREY])
        path, expected = save(tmp_path, Image.fromarray(cmyk, "CMYK"), "a.tif"), cmyk_expected(cmyk)
    elif case == "I;16 png":
        path, expected = save(tmp_path, Image.fromarray(SIXTEEN), "a.png"), grey_rgb(SIXTEEN_HIGH)
    elif case == "I;16 tiff":
        path, expected = save(tmp_path, Image.fromarray(SIXTEEN), "a.tif"), grey_rgb(SIXTEEN_HIGH)
    elif case == "I;16B tiff":
        image = Image.frombytes("I;16B", (4, 2), SIXTEEN.astype(">u2").tobytes())
        path, expected = save(tmp_path, image, "a.tif"), grey_rgb(SIXTEEN_HIGH)
    elif case == "I tiff":
        path = save(tmp_path, Image.fromarray(SIXTEEN.astype(np.int32), "I"), "a.tif")
        expected = grey_rgb(SIXTEEN_HIGH)
    elif case == "16-bit grey png":
        path, expected = written(tmp_path, "a.png", png_bytes(SIXTEEN)), grey_rgb(SIXTEEN_HIGH)
    elif case == "16-bit grey+alpha png":
        path = written(tmp_path, "a.png", png_bytes(np.dstack([SIXTEEN, SIXTEEN[::-1]])))
        expected = grey_rgb(SIXTEEN_HIGH)
    elif case == "16-bit RGB png":
        rgb16 = np.dstack([SIXTEEN, SIXTEEN[::-1], SIXTEEN[:, ::-1]])
        path, expected = written(tmp_path, "a.png", png_bytes(rgb16)), (rgb16 >> 8).astype(np.uint8)
    else:  # 16-bit RGBA png
        rgba16 = np.dstack([SIXTEEN, SIXTEEN[::-1], SIXTEEN[:, ::-1], SIXTEEN])
        path, expected = written(tmp_path, "a.png", png_bytes(rgba16)), (rgba16[..., :3] >> 8).astype(np.uint8)
    np.testing.assert_array_equal(decoded(path), expected)


def test_16_bit_grey_is_not_clipped_to_white(tmp_path):
    """The reported bug: a mid-grey 16-bit PNG came out solid white (255)."""
    path = save(tmp_path, Image.fromarray(np.full((3, 5), 0x8000, np.uint16)), "grey.png")
    assert decoded(path).max() == 128 and decoded(path).min() == 128


def test_exif_orientation_is_applied(tmp_path):
    """Orientation 6 (stored turned 90 degrees anticlockwise) is shown, and decoded, turned clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, Image.fromarray(RGB, "RGB"), "a.png", exif=exif)
    np.testing.assert_array_equal(decoded(path), np.rot90(RGB, k=-1))


def test_float_mode_is_refused_by_name(tmp_path):
    path = save(tmp_path, Image.fromarray(GREY.astype(np.float32), "F"), "a.tif")
    with pytest.raises(DataError, match=rf"image {path}: pixel mode F \(32-bit floating point"):
        decoded(path)


def test_mode_i_outside_16_bits_is_refused(tmp_path):
    path = save(tmp_path, Image.fromarray(np.array([[0, 70000]], np.int32), "I"), "a.tif")
    with pytest.raises(DataError, match=r"pixel mode I holds values 0..70000, outside the 16-bit range"):
        decoded(path)


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_animation_is_refused(tmp_path, fmt):
    frames = [Image.fromarray(RGB, "RGB"), Image.fromarray(RGB[::-1], "RGB")]
    path = tmp_path / "a.png"  # a GIF named .png too: Pillow reads the content, not the name
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=rf"image {path}: {fmt} file holds 2 frames"):
        decoded(path)


def test_training_decoder_uses_the_rule(tmp_path):
    """Training's decoder goes through to_rgb8 (predict and the interpretability chapter call it too)."""
    from lesionscan.model import pipeline

    path = save(tmp_path, Image.fromarray(np.full((6, 8), 0x4000, np.uint16)), "a.png")
    np.testing.assert_array_equal(pipeline.load_image(path, 4), np.full((4, 4, 3), 0x40, np.uint8))
    float_path = save(tmp_path, Image.fromarray(np.zeros((6, 8), np.float32), "F"), "f.tif")
    with pytest.raises(DataError, match="pixel mode F"):
        pipeline.load_image(float_path, 4)
