"""Images of raw rows: decoded once to check them, embedded ones written once by content hash.

A raw image arrives as bytes, a `{"bytes": ..., "path": ...}` struct (the Hugging Face
`Image` feature in parquet), a `data:image/...;base64,` URI, or a path relative to the data
file. Prepared rows always point at an absolute path on disk.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import posixpath
import threading
from dataclasses import dataclass
from pathlib import Path

from satori_cli.data.readers import Unpacked
from satori_cli.data.validate import Rejected, show
from satori_cli.outputs import scratch_name

# The formats a prepared row may point at (what Qwen's processor and the browsers read);
# PIL is never asked to try its other plugins on untrusted bytes (EPS would run Ghostscript).
EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # MPO comes from the JPEG opener
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    width: int
    height: int


@functools.cache
def pil():
    """PIL's Image module, with its decompression-bomb warning made an error for this process
    (once: `warnings.catch_warnings` per call is not thread-safe, and images are checked on
    several threads). An image over `Image.MAX_IMAGE_PIXELS` is then rejected, not decoded."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    return Image


def decode_size(data: bytes | None = None, path: Path | None = None) -> tuple[int, int, str]:
    """(width, height, format) of an image decoded end to end, so corrupt pixel data is caught.

    Every format is fully decoded (a PNG whose chunk CRCs are right can still hold pixel data
    that does not inflate, and training would then fail far from the cause), except JPEG,
    which is decoded at 1/8 scale (`draft`): that still reads every entropy-coded byte.
    """
    import io

    Image = pil()
    try:
        source = io.BytesIO(data) if data is not None else path
        with Image.open(source, formats=OPEN_FORMATS) as img:
            size, fmt = img.size, img.format or ""
            if fmt in ("JPEG", "MPO"):
                img.draft(img.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
            return size[0], size[1], fmt
    except Exception as exc:  # PIL raises many types for bad data; all mean "corrupt"
        raise Rejected("corrupt_image", f"{type(exc).__name__}: {exc}") from exc


def _unwrap(value: object) -> object:
    """Bytes or a path string from any accepted form (checks the types, never converts them);
    a one-element list is unwrapped, several images are rejected."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise Rejected("missing_image")
        if len(value) > 1:
            raise Rejected("multiple_images", f"{len(value)} images")
        value = value[0]
    if value is None or value == "" or value == b"":
        raise Rejected("missing_image")
    if isinstance(value, dict):
        data, ref = value.get("bytes"), value.get("path")
        if data is not None and data != b"":
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise Rejected("corrupt_image", f"image bytes are {show(data)}, not binary data")
            return bytes(data)
        if not ref:
            raise Rejected("missing_image", "an image struct with neither bytes nor path")
        value = ref
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise Rejected("missing_image", f"an image of type {type(value).__name__}")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise Rejected("missing_image", f"not a usable path: {show(value)}")
    return value


def member_key(value: object, base_dir: Path, root: Path) -> str | None:
    """The archive member (relative to `root`) a row's image refers to, if any: what to extract."""
    try:
        value = _unwrap(value)
    except Rejected:
        return None
    if not isinstance(value, str) or value.startswith(("data:", "http://", "https://", "/")):
        return None
    try:
        rel = base_dir.relative_to(root).as_posix()
    except ValueError:
        return None
    key = posixpath.normpath(posixpath.join(rel, value))
    return None if key.startswith("../") or key == ".." else key


def resolve(value: object, base_dir: Path, jail: Unpacked | None, images_dir: Path) -> ImageInfo:
    """Check the image and return where the prepared row points, writing embedded bytes once."""
    value = _unwrap(value)
    if isinstance(value, bytes):
        return _store(value, images_dir)
    if value.startswith("data:image/"):
        try:
            data = base64.b64decode(value.split(",", 1)[1], validate=True)
        except (IndexError, ValueError) as exc:
            raise Rejected("corrupt_image", "a data URI that is not valid base64") from exc
        return _store(data, images_dir)
    if value.startswith(("http://", "https://")):
        raise Rejected("missing_image", f"a URL ({value[:60]}); download the images first")
    try:
        if jail is not None:
            # Inside an unpacked archive, paths are relative to the archive and must stay in it.
            key = member_key(value, base_dir, jail.root)
            if key is None:
                raise Rejected("image_outside_archive", value)
            if key in jail.problems:
                raise Rejected("corrupt_image", f"{key}: {jail.problems[key]}")
            path = jail.root / key
            if not path.is_file():
                raise Rejected("missing_image", f"{value} not found in the archive")
            return _store(path.read_bytes(), images_dir)
        path = (base_dir / Path(value).expanduser()).resolve()
        if not path.is_file():  # also false for a FIFO or a device: those are never opened
            raise Rejected("missing_image", f"{path} not found")
    except (OSError, RuntimeError, ValueError) as exc:  # name too long, no such user for ~x, ...
        raise Rejected("missing_image", f"{show(value)}: {exc}") from exc
    width, height, _ = decode_size(path=path)
    return ImageInfo(path, width, height)


def _store(data: bytes, images_dir: Path) -> ImageInfo:
    width, height, fmt = decode_size(data=data)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    target = images_dir / f"{digest}{EXTENSIONS[fmt]}"
    if not target.exists():
        # A scratch name per thread (images are checked on several), renamed atomically:
        # a reader never sees half an image, and two threads writing the same one both win.
        tmp = scratch_name(images_dir / f"{digest}-{threading.get_ident()}{target.suffix}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return ImageInfo(target.resolve(), width, height)
