"""Read any reasonable image file into an (H, W, 3) uint8 RGB array, and write one back.

Training and serving both start from a user's file, so every way such a file can be
wrong (missing, corrupt, an odd colour mode, rotated by EXIF, animated, enormous) is
turned into either a clean RGB array plus one-line notices, or an `ImageError` whose
message names the file and the fix. Pillow errors never escape for user-caused problems.

This module deliberately imports only numpy and Pillow so serving boxes stay light.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from ingan.errors import ConfigError, ImageError, OutputPathError, first_line
from ingan.fsutil import IMAGE_FILES, atomic_path, existing_file

__all__ = ["LoadedImage", "SUPPORTED_SAVE_SUFFIXES", "decode_image", "encode_image", "load_image", "save_image"]

logger = logging.getLogger(__name__)

ALPHA_NOTICE = "alpha channel dropped: transparent pixels composited over white"

SUPPORTED_SAVE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_SAVE_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}  # libjpeg / libwebp hard limits

_EXIF_ORIENTATION = 0x0112
_ORIENTATION_TEXT = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "transposed (mirrored and rotated 90°)",
    6: "rotated 90° clockwise",
    7: "transversed (mirrored and rotated 90°)",
    8: "rotated 90° counter-clockwise",
}
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# Pillow decoders report corrupt data through many exception types, not just OSError.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, TypeError, KeyError)


@dataclass(frozen=True)
class LoadedImage:
    """Pixels plus the source and the conversions done, so a CLI can tell the user."""

    pixels: np.ndarray  # (H, W, 3) uint8, C-contiguous RGB
    source: str  # the path as given
    notices: tuple[str, ...] = ()
    decoded_size: tuple[int, int] | None = None  # (H, W) as stored (upright), before --max-side

    @property
    def downscaled(self) -> bool:
        return self.decoded_size is not None and self.decoded_size != tuple(self.pixels.shape[:2])


def load_image(path: str | os.PathLike[str], max_side: int | None = None) -> LoadedImage:
    """Load `path` as 8-bit RGB, downscaling so the longer side is at most `max_side`.

    EXIF orientation is applied and alpha is composited over white so the array matches
    what an image viewer shows; each such conversion adds a line to `notices`.
    """
    if max_side is not None and max_side < 1:
        raise ConfigError(f"max_side must be at least 1, got {max_side}")
    source = os.fsdecode(path)
    fpath = Path(source)
    _check_file(fpath, source)
    try:
        fh = open(fpath, "rb")  # noqa: SIM115 - closed by the with below
    except PermissionError:
        raise ImageError(
            f"cannot read '{source}': permission denied; make the file readable (chmod +r) "
            "or copy it somewhere you can read"
        ) from None
    except OSError as exc:
        raise ImageError(
            f"cannot read '{source}': {exc.strerror or exc}; check the path"
        ) from None
    with fh:
        return _decode(fh, source, max_side)


def _check_file(fpath: Path, source: str) -> None:
    """Catch the path problems up front: Pillow's messages for them are misleading."""
    existing_file(fpath, "image", IMAGE_FILES, ImageError)
    try:
        size = fpath.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read '{source}': {exc.strerror or exc}; check the path") from None
    if size == 0:
        raise ImageError(
            f"cannot read '{source}': the file is empty (0 bytes); "
            "re-export or re-download the image"
        )


def _decode(fh: object, source: str, max_side: int | None) -> LoadedImage:
    notices: list[str] = []
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; treat that as fatal too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh)  # type: ignore[arg-type]
        except UnidentifiedImageError:
            raise ImageError(_unidentified_message(fh, source)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(_bomb_message(exc, source)) from None
        except MemoryError:
            raise ImageError(_memory_message(source)) from None
        except _DECODE_ERRORS as exc:
            raise ImageError(_corrupt_message(exc, source)) from None
        with img:
            try:
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    notices.append(
                        f"file has {frames} frames ({img.format}); using the first frame only"
                    )
                    img.seek(0)
                full_w, full_h = img.size
                # Pillow decodes 16-bit colour PNGs straight to 8 bits (the high byte); the
                # raw mode of the undecoded tile is the only place that still says so.
                raw_mode = img.tile[0][3] if img.tile else None
                if img.format == "PNG" and isinstance(raw_mode, str) and raw_mode.endswith(";16B") and \
                        img.mode in ("RGB", "RGBA"):
                    notices.append(f"16-bit {img.mode} reduced to 8 bits")
                if max_side is not None and max(full_w, full_h) > max_side and img.format == "JPEG":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: far less memory for huge photos.
                    img.draft("RGB", _fit(full_w, full_h, max_side))
                img.load()  # force a full decode so truncation is caught here, not later
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageError(_bomb_message(exc, source)) from None
            except MemoryError:
                raise ImageError(_memory_message(source, img.size)) from None
            except _DECODE_ERRORS as exc:
                raise ImageError(_corrupt_message(exc, source)) from None

            img, rotated = _apply_orientation(img, source, notices)
            if rotated:
                full_w, full_h = full_h, full_w
            rgb = _to_rgb(img, source, notices)
            if max_side is not None and max(full_w, full_h) > max_side:
                target = _fit(full_w, full_h, max_side)
                if rgb.size != target:
                    rgb = rgb.resize(target, Image.Resampling.LANCZOS)
                notices.append(
                    f"image is {full_w}x{full_h}; downscaled to {target[0]}x{target[1]} "
                    f"(--max-side {max_side})"
                )
            # Copy out before `with img` closes it: a closed Pillow image loses its pixels.
            pixels = np.array(rgb, dtype=np.uint8, order="C")
    if pixels.ndim != 3 or pixels.shape[2] != 3:  # pragma: no cover - guards our own conversion
        raise AssertionError(f"conversion produced shape {pixels.shape}")
    for notice in notices:
        logger.debug("%s: %s", source, notice)
    return LoadedImage(pixels=pixels, source=source, notices=tuple(notices), decoded_size=(full_h, full_w))


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    """Size with the longer side equal to `max_side`, aspect ratio kept, each side >= 1."""
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _apply_orientation(
    img: Image.Image, source: str, notices: list[str]
) -> tuple[Image.Image, bool]:
    """Apply EXIF orientation; return the image and whether width and height swapped."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION)
    except Exception as exc:  # noqa: BLE001 - corrupt EXIF must not make a good image unreadable
        logger.debug("%s: unreadable EXIF: %s", source, exc)
        notices.append("EXIF metadata is unreadable; orientation (if any) ignored")
        return img, False
    if orientation not in _ORIENTATION_TEXT:
        return img, False
    transposed = ImageOps.exif_transpose(img)
    notices.append(
        f"EXIF orientation {orientation} applied: image {_ORIENTATION_TEXT[orientation]}"
    )
    return transposed, orientation in (5, 6, 7, 8)


def _to_rgb(img: Image.Image, source: str, notices: list[str]) -> Image.Image:
    """Reduce any Pillow mode to 8-bit RGB the way a viewer would display it."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _UINT16_MODES or mode == "I":
        return _gray_array_to_rgb(_int_to_uint8(np.asarray(img), mode, notices))
    if mode == "F":
        return _gray_array_to_rgb(_float_to_uint8(np.asarray(img, dtype=np.float64), notices))
    if _has_alpha(img):
        return _composite_over_white(img, notices)
    if mode == "CMYK":
        notices.append("CMYK image converted to RGB without a colour profile; colours may shift")
    try:
        return img.convert("RGB")
    except ValueError:
        raise ImageError(
            f"cannot read '{source}': colour mode '{mode}' is not supported; "
            "convert the image to RGB (e.g. save it as an 8-bit PNG) first"
        ) from None


def _has_alpha(img: Image.Image) -> bool:
    # By mode, not by band name: LAB has an "A" band that is a colour axis, not alpha.
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return True
    return img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA"


def _composite_over_white(img: Image.Image, notices: list[str]) -> Image.Image:
    if img.mode == "La":  # Pillow has no La -> RGBA conversion; un-premultiply first
        img = img.convert("LA")
    arr = np.asarray(img.convert("RGBA"), dtype=np.uint32)
    alpha = arr[..., 3:4]
    if alpha.min() == 255:
        return Image.fromarray(np.ascontiguousarray(arr[..., :3].astype(np.uint8)))
    # out = rgb * a + 255 * (1 - a), in integers with rounding.
    out = (arr[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    notices.append(ALPHA_NOTICE)
    return Image.fromarray(out.astype(np.uint8))


def _int_to_uint8(values: np.ndarray, mode: str, notices: list[str]) -> np.ndarray:
    """16-bit (or 32-bit int holding 16-bit) gray -> 8 bit by value/257, as 65535 -> 255."""
    values = values.astype(np.int64)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > 65535:
        notices.append(f"{mode} values outside 0..65535 clipped (range was {lo}..{hi})")
        values = np.clip(values, 0, 65535)
    notices.append("16-bit grayscale reduced to 8 bits")
    return np.rint(values / 257.0).astype(np.uint8)


def _float_to_uint8(values: np.ndarray, notices: list[str]) -> np.ndarray:
    """Floats have no fixed range: guess [0,1], [0,255] or [0,65535] from the maximum."""
    if not np.isfinite(values).all():
        notices.append("float image has NaN/infinite values; set to 0")
        values = np.where(np.isfinite(values), values, 0.0)
    peak = float(values.max()) if values.size else 0.0
    if peak <= 1.0:
        scale, label = 255.0, "0..1"
    elif peak <= 255.0:
        scale, label = 1.0, "0..255"
    else:
        scale, label = 1.0 / 257.0, "0..65535"
    notices.append(f"float image read as range {label} and converted to 8 bits (values clipped)")
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _gray_array_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)))


def _unidentified_message(fh: object, source: str) -> str:
    head = b""
    try:
        fh.seek(0)  # type: ignore[attr-defined]
        head = fh.read(512)  # type: ignore[attr-defined]
    except OSError:
        pass
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return (
                f"cannot read '{source}': it is a text file, not an image; "
                "pass an image file (PNG, JPEG, WebP, ...)"
            )
    return (
        f"cannot read '{source}': not a recognised image format (or the file is corrupt); "
        "convert it to PNG or JPEG, or re-download it"
    )


def _corrupt_message(exc: BaseException, source: str) -> str:
    detail = first_line(exc, None)
    return (
        f"cannot read '{source}': file is truncated or corrupt ({detail}); "
        "re-export or re-download the image"
    )


def _bomb_message(exc: BaseException, source: str) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    count = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    limit = Image.MAX_IMAGE_PIXELS
    limit_text = f"{limit:,}" if limit is not None else "the"
    return (
        f"cannot read '{source}': image has {count}, over the safety limit of {limit_text} pixels "
        "(decompression-bomb protection); downscale it with an image editor first"
    )


def _memory_message(source: str, size: tuple[int, int] | None = None) -> str:
    dims = f" ({size[0]}x{size[1]})" if size else ""
    return (
        f"cannot read '{source}': not enough memory to decode the image{dims}; "
        "downscale it with an image editor first"
    )


def save_image(pixels: np.ndarray, path: str | os.PathLike[str], quality: int = 95) -> Path:
    """Write RGB `pixels` in the format named by the suffix, atomically.

    Atomic so that a crash or a full disk never leaves a half-written image that a later
    run (or a user) would mistake for a result.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        got = getattr(pixels, "dtype", type(pixels))
        raise ValueError(f"pixels must be a uint8 numpy array, got {got}")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"pixels must have shape (H, W, 3) with H, W >= 1, got {pixels.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    final = Path(path)
    suffix = final.suffix.lower()
    fmt = _SAVE_FORMATS.get(suffix)
    if fmt is None:
        raise OutputPathError(
            f"cannot write '{final}': unsupported image type '{final.suffix or '(no suffix)'}'; "
            f"use one of {', '.join(SUPPORTED_SAVE_SUFFIXES)}"
        )
    if fmt == "WEBP" and not features.check("webp"):
        raise OutputPathError(
            f"cannot write '{final}': this Pillow build has no WebP support; use .png or .jpg"
        )
    h, w = pixels.shape[:2]
    limit = _SAVE_MAX_SIDE.get(fmt)
    if limit is not None and max(h, w) > limit:
        raise OutputPathError(
            f"cannot write '{final}': image is {w}x{h}, too large for {fmt} "
            f"(at most {limit} pixels a side); save it as .png instead"
        )
    img = Image.fromarray(np.ascontiguousarray(pixels))
    try:
        with atomic_path(final) as tmp:
            img.save(tmp, format=fmt, **_encoder_options(fmt, quality))
    except OSError as exc:
        raise OutputPathError(
            f"cannot write '{final}': {exc.strerror or exc}; check free space and permissions"
        ) from None
    except ValueError as exc:  # Pillow encoders report some limits as ValueError
        raise OutputPathError(f"cannot write '{final}': {exc}; try saving as .png") from None
    return final


# zlib level 1: a 256x256 retarget encodes in ~3 ms instead of ~12-15 ms at Pillow's default
# level 6 on a 2-core CPU (files ~30% larger); a server encodes every answer.
PNG_COMPRESS_LEVEL = 1


def _encoder_options(fmt: str, quality: int) -> dict[str, object]:
    """Pillow save options: one place, so a served image has the bytes `save_image` writes."""
    return {"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {"quality": quality}


def encode_image(pixels: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """RGB `pixels` as the bytes of a PNG, JPEG or WEBP file (`fmt`), exactly as `save_image`
    would write them; for servers, which answer bytes instead of writing files."""
    if fmt not in _SAVE_MAX_SIDE and fmt != "PNG":
        raise ValueError(f"unsupported format {fmt!r}; use PNG, JPEG or WEBP")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be an (H, W, 3) uint8 array, got {getattr(pixels, 'shape', type(pixels))}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    limit = _SAVE_MAX_SIDE.get(fmt)
    if limit is not None and max(pixels.shape[:2]) > limit:
        raise ConfigError(f"{pixels.shape[1]}x{pixels.shape[0]} is too large for {fmt} (at most {limit} pixels "
                          "a side); ask for PNG")
    if fmt == "WEBP" and not features.check("webp"):
        raise ConfigError("this Pillow build has no WebP support; ask for PNG or JPEG")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format=fmt, **_encoder_options(fmt, quality))
    return buffer.getvalue()


def decode_image(data: bytes, source: str = "the uploaded image", max_side: int | None = None) -> LoadedImage:
    """`load_image` for bytes already in memory (an HTTP upload): same checks, same notices."""
    if not data:
        raise ImageError(f"cannot read {source}: it is empty (0 bytes); send the image file's bytes")
    return _decode(io.BytesIO(data), source, max_side)
