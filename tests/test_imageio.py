"""Tests for ingan.imageio: every file is created here, in tmp_path."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, features

from ingan import imageio
from ingan.errors import ConfigError, ImageError, OutputPathError
from ingan.imageio import (
    ALPHA_NOTICE,
    SUPPORTED_SAVE_SUFFIXES,
    LoadedImage,
    load_image,
    save_image,
)

RNG = np.random.default_rng(0)


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def opened(path: Path) -> Image.Image:
    """Open and load, closing the file (the tests run clean under -W error)."""
    with Image.open(path) as img:
        img.load()
        return img


def assert_rgb(loaded: LoadedImage, h: int, w: int) -> np.ndarray:
    px = loaded.pixels
    assert px.shape == (h, w, 3)
    assert px.dtype == np.uint8
    assert px.flags["C_CONTIGUOUS"]
    return px


def read_error(path: Path, match: str, **kwargs: object) -> str:
    with pytest.raises(ImageError, match=match) as info:
        load_image(path, **kwargs)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def write_png_raw(
    path: Path, width: int, height: int, bit_depth: int, color_type: int, raw: bytes
) -> None:
    """A minimal PNG writer, for formats Pillow cannot write (48-bit RGB)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    read_error(tmp_path / "nope.png", "does not exist; check the path")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    d = tmp_path / "folder.png"
    d.mkdir()
    read_error(d, r"is not a file \(a folder\)")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 0 where that denies reading; root reads any file, so there the OS's
    PermissionError is raised by a patched open instead (same code path, no skip)."""
    p = tmp_path / "secret.png"
    Image.fromarray(noise(4, 4)).save(p)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        p.chmod(0)
        try:
            read_error(p, "permission denied")
        finally:
            p.chmod(0o644)
        return

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(p))

    monkeypatch.setattr(imageio, "open", denied, raising=False)
    read_error(p, "permission denied")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    read_error(p, "empty")


def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("hello, this is not an image\n")
    read_error(p, "text file")


def test_random_bytes_with_png_name(tmp_path: Path) -> None:
    p = tmp_path / "random.png"
    p.write_bytes(bytes(RNG.integers(0, 256, size=2048, dtype=np.uint8)) + b"\x00")
    read_error(p, "not a recognised image format")


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated(tmp_path: Path, fmt: str, suffix: str) -> None:
    full = tmp_path / f"full{suffix}"
    Image.fromarray(noise(128, 128)).save(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    msg = read_error(cut, "truncated or corrupt")
    assert "re-export or re-download" in msg


# 400 pixels is over 2x the limit (Pillow raises); 150 is over 1x (Pillow only warns).
@pytest.mark.parametrize("size", [(20, 20), (15, 10)])
def test_decompression_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    p = tmp_path / "bomb.png"
    Image.new("RGB", size).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    msg = read_error(p, "decompression-bomb")
    assert f"{size[0] * size[1]:,} pixels" in msg


def test_bad_max_side(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_side must be at least 1"):
        load_image(tmp_path / "x.png", max_side=0)


# ---------------------------------------------------------------- modes


def test_rgb_exact_and_source(tmp_path: Path) -> None:
    arr = noise(5, 7)
    p = tmp_path / "rgb.png"
    Image.fromarray(arr).save(p)
    loaded = load_image(str(p))
    np.testing.assert_array_equal(assert_rgb(loaded, 5, 7), arr)
    assert loaded.source == str(p)
    assert loaded.notices == ()
    assert load_image(p).source == str(p)  # PathLike accepted


def test_grayscale_replicated(tmp_path: Path) -> None:
    gray = noise(4, 6, c=1)
    p = tmp_path / "l.png"
    Image.fromarray(gray).save(p)
    px = assert_rgb(load_image(p), 4, 6)
    for c in range(3):
        np.testing.assert_array_equal(px[..., c], gray)


def test_la_composited(tmp_path: Path) -> None:
    p = tmp_path / "la.png"
    Image.new("LA", (3, 2), (0, 0)).save(p)  # black, fully transparent -> white
    loaded = load_image(p)
    assert (assert_rgb(loaded, 2, 3) == 255).all()
    assert ALPHA_NOTICE in loaded.notices


def test_rgba_half_transparent(tmp_path: Path) -> None:
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = [[255, 0], [128, 255]]
    p = tmp_path / "rgba.png"
    Image.fromarray(arr).save(p)
    loaded = load_image(p)
    px = assert_rgb(loaded, 2, 2)
    np.testing.assert_array_equal(px[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(px[0, 1], [255, 255, 255])
    # 128/255 of the colour over white: round(200*128/255 + 255*127/255) = 227
    np.testing.assert_array_equal(px[1, 0], [227, 127, 127])
    assert loaded.notices == (ALPHA_NOTICE,)


def test_rgba_opaque_has_no_notice(tmp_path: Path) -> None:
    arr = noise(3, 3, c=4)
    arr[..., 3] = 255
    p = tmp_path / "opaque.png"
    Image.fromarray(arr).save(p)
    loaded = load_image(p)
    np.testing.assert_array_equal(assert_rgb(loaded, 3, 3), arr[..., :3])
    assert loaded.notices == ()


def _palette_image() -> Image.Image:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    img.putpixel((1, 0), 1)
    return img


def test_palette_without_transparency(tmp_path: Path) -> None:
    p = tmp_path / "p.png"
    _palette_image().save(p)
    loaded = load_image(p)
    px = assert_rgb(loaded, 2, 4)
    np.testing.assert_array_equal(px[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(px[0, 1], [200, 100, 50])
    assert loaded.notices == ()


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"pt{suffix}"
    _palette_image().save(p, transparency=0)
    loaded = load_image(p)
    px = assert_rgb(loaded, 2, 4)
    np.testing.assert_array_equal(px[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(px[0, 1], [200, 100, 50])
    assert ALPHA_NOTICE in loaded.notices


def test_bilevel(tmp_path: Path) -> None:
    img = Image.new("1", (3, 2), 0)
    img.putpixel((2, 1), 1)
    p = tmp_path / "bw.png"
    img.save(p)
    px = assert_rgb(load_image(p), 2, 3)
    assert px.sum() == 3 * 255 and (px[1, 2] == 255).all()


def test_16bit_gray_png(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 385], [386, 65535, 257 * 100, 1000]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(values).save(p)
    assert opened(p).mode in ("I;16", "I")
    px = assert_rgb(load_image(p), 2, 4)
    expected = np.rint(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(px[..., 0], expected)
    np.testing.assert_array_equal(expected, [[0, 0, 1, 1], [2, 255, 100, 4]])


def test_mode_i_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 65535, 70000, -5]], dtype=np.int32)
    p = tmp_path / "i.tif"
    Image.fromarray(values).save(p)
    assert opened(p).mode == "I"
    loaded = load_image(p)
    np.testing.assert_array_equal(assert_rgb(loaded, 1, 4)[0, :, 0], [0, 255, 255, 0])
    assert any("clipped" in n for n in loaded.notices)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0.0, 0.5, 1.0, -0.2], [0, 128, 255, 0]),  # [0, 1] range
        ([0.0, 100.0, 255.0, 300.0 - 45.0], [0, 100, 255, 255]),  # [0, 255] range
        ([0.0, 65535.0, 257.0 * 10, 1e9], [0, 255, 10, 255]),  # 16-bit range, clipped
    ],
)
def test_float_tiff(tmp_path: Path, values: list[float], expected: list[int]) -> None:
    p = tmp_path / "f.tif"
    Image.fromarray(np.array([values], dtype=np.float32)).save(p)
    assert opened(p).mode == "F"
    np.testing.assert_array_equal(assert_rgb(load_image(p), 1, 4)[0, :, 1], expected)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(p, quality=100)
    assert opened(p).mode == "CMYK"
    loaded = load_image(p)
    px = assert_rgb(loaded, 6, 8)
    assert px[..., 0].min() > 240 and px[..., 1:].max() < 15  # red
    assert any("CMYK" in n for n in loaded.notices)


def test_ycbcr_tiff(tmp_path: Path) -> None:
    p = tmp_path / "ycc.tif"
    Image.new("RGB", (4, 3), (30, 160, 90)).convert("YCbCr").save(p)
    assert opened(p).mode == "YCbCr"
    px = assert_rgb(load_image(p), 3, 4)
    assert np.abs(px[0, 0].astype(int) - [30, 160, 90]).max() <= 3


@pytest.mark.parametrize(
    "mode, alpha", [("PA", True), ("La", True), ("RGBa", True), ("LAB", False), ("HSV", False)]
)
def test_rare_modes_in_memory(mode: str, alpha: bool) -> None:
    """Modes no test file above produces; LAB's "A" band is colour, not alpha."""
    notices: list[str] = []
    out = imageio._to_rgb(Image.new(mode, (3, 2)), "x", notices)
    assert out.mode == "RGB" and out.size == (3, 2)
    assert (ALPHA_NOTICE in notices) == alpha


def test_48bit_rgb_png(tmp_path: Path) -> None:
    values = np.zeros((2, 3, 3), dtype=">u2")
    values[0, 0] = [65535, 0, 257 * 100]
    raw = b"".join(b"\x00" + row.tobytes() for row in values)
    p = tmp_path / "rgb48.png"
    write_png_raw(p, 3, 2, 16, 2, raw)
    loaded = load_image(p)
    px = assert_rgb(loaded, 2, 3)
    np.testing.assert_array_equal(px[0, 0], [255, 0, 100])
    assert (px[1] == 0).all()
    assert "16-bit RGB reduced to 8 bits" in loaded.notices  # Pillow does it silently; we say so


# ---------------------------------------------------------------- orientation, frames, size


def test_exif_orientation_rotates(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (90, 90, 90)).save(p, exif=exif)
    loaded = load_image(p)
    assert_rgb(loaded, 40, 20)
    assert any("orientation 6" in n for n in loaded.notices)


def test_exif_orientation_with_max_side(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (400, 200)).save(p, exif=exif)
    loaded = load_image(p, max_side=100)
    assert_rgb(loaded, 100, 50)
    assert "image is 200x400; downscaled to 50x100 (--max-side 100)" in loaded.notices


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (5, 4), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50)
    loaded = load_image(p)
    px = assert_rgb(loaded, 4, 5)
    np.testing.assert_array_equal(px[0, 0], [255, 0, 0])
    assert any("3 frames" in n for n in loaded.notices)


def test_multipage_tiff_first_frame(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (6, 2), (1, 2, 3)), Image.new("RGB", (9, 9), (4, 5, 6))]
    p = tmp_path / "pages.tif"
    pages[0].save(p, save_all=True, append_images=pages[1:])
    loaded = load_image(p)
    np.testing.assert_array_equal(assert_rgb(loaded, 2, 6)[0, 0], [1, 2, 3])
    assert any("2 frames" in n for n in loaded.notices)


def test_max_side_downscales_png(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.fromarray(noise(300, 400)).save(p)
    loaded = load_image(p, max_side=100)
    assert_rgb(loaded, 75, 100)
    assert loaded.notices == ("image is 400x300; downscaled to 100x75 (--max-side 100)",)


def test_max_side_keeps_small_images(tmp_path: Path) -> None:
    p = tmp_path / "small.png"
    Image.fromarray(noise(30, 40)).save(p)
    loaded = load_image(p, max_side=40)
    assert_rgb(loaded, 30, 40)
    assert loaded.notices == ()


def test_max_side_thin_image_keeps_one_pixel(tmp_path: Path) -> None:
    p = tmp_path / "thin.png"
    Image.fromarray(noise(1, 500)).save(p)
    assert_rgb(load_image(p, max_side=50), 1, 50)


def test_max_side_jpeg_uses_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 800), (10, 200, 30)).save(p)
    calls: list[tuple[str | None, object]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: object) -> object:
        calls.append((mode, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    loaded = load_image(p, max_side=100)
    px = assert_rgb(loaded, 50, 100)
    assert calls == [("RGB", (100, 50))]
    assert np.abs(px[25, 50].astype(int) - [10, 200, 30]).max() <= 8
    assert "image is 1600x800; downscaled to 100x50 (--max-side 100)" in loaded.notices


def test_does_not_import_torch() -> None:
    code = "import sys, ingan.imageio; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ---------------------------------------------------------------- save


def test_png_round_trip_exact(tmp_path: Path) -> None:
    arr = noise(9, 11)
    out = save_image(arr, tmp_path / "out.png")
    assert out == tmp_path / "out.png"
    np.testing.assert_array_equal(load_image(out).pixels, arr)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


@pytest.mark.parametrize("name", ["out.jpg", "out.JPEG", "out.webp", "out.PNG"])
def test_lossy_and_case_insensitive(tmp_path: Path, name: str) -> None:
    if name.endswith(".webp") and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    out = save_image(noise(10, 12), tmp_path / name, quality=80)
    assert_rgb(load_image(out), 10, 12)
    expected = {"out.jpg": "JPEG", "out.JPEG": "JPEG", "out.webp": "WEBP", "out.PNG": "PNG"}[name]
    assert opened(out).format == expected


def test_supported_suffixes() -> None:
    assert SUPPORTED_SAVE_SUFFIXES == (".png", ".jpg", ".jpeg", ".webp")


@pytest.mark.parametrize("name", ["out.bmp", "out"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputPathError, match=r"\.png, \.jpg, \.jpeg, \.webp") as info:
        save_image(noise(2, 2), tmp_path / name)
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, width", [("wide.webp", 16384), ("wide.jpg", 65501)])
def test_too_large_for_format(tmp_path: Path, name: str, width: int) -> None:
    with pytest.raises(OutputPathError, match=rf"{width}x1, too large .*\.png"):
        save_image(np.zeros((1, width, 3), np.uint8), tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_missing_parent_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        save_image(noise(2, 2), tmp_path / "no" / "such" / "out.png")


def test_target_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "out.png").mkdir()
    with pytest.raises(OutputPathError, match="folder"):
        save_image(noise(2, 2), tmp_path / "out.png")


def test_failed_write_leaves_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "out.png"
    final.write_bytes(b"previous result")

    def disk_full(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"half an image")  # type: ignore[arg-type]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OutputPathError, match="No space left") as info:
        save_image(noise(4, 4), final)
    assert str(final) in str(info.value)
    assert os.listdir(tmp_path) == ["out.png"]
    assert final.read_bytes() == b"previous result"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_bad_pixels_are_programming_errors(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        save_image(bad, tmp_path / "out.png")
    assert os.listdir(tmp_path) == []
