"""Images of raw rows: decoded once to check them, embedded ones written once by content hash.

A raw image arrives as bytes, a `{"bytes": ..., "path": ...}` struct (the Hugging Face
`Image` feature in parquet), a `data:image/...;base64,` URI, or a path relative to the data
file. Prepared rows always point at an absolute path on disk.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from satori_cli.data.validate import Rejected

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    width: int
    height: int


def decode_size(data: bytes | None = None, path: Path | None = None) -> tuple[int, int, str]:
    """(width, height, format) after a full decode, so truncated or corrupt files are caught."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                img.load()
                return img.width, img.height, img.format or ""
    except Exception as exc:  # PIL raises many types for bad data; all mean "corrupt"
        raise Rejected("corrupt_image", f"{type(exc).__name__}: {str(exc)[:120]}") from exc


def one_image(value: object) -> object:
    """The single image of a row: unwraps a one-element list, rejects several."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise Rejected("missing_image")
        if len(value) > 1:
            raise Rejected("multiple_images", f"{len(value)} images")
        value = value[0]
    if value is None or value == "" or value == b"":
        raise Rejected("missing_image")
    return value


def resolve(value: object, base_dir: Path, jail: Path | None, images_dir: Path) -> ImageInfo:
    """Check the image and return where the prepared row points, writing embedded bytes once."""
    value = one_image(value)
    if isinstance(value, dict):
        data, ref = value.get("bytes"), value.get("path")
        if data:
            return _store(bytes(data), images_dir)
        value = ref
        if not value:
            raise Rejected("missing_image", "an image struct with neither bytes nor path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _store(bytes(value), images_dir)
    if not isinstance(value, str):
        raise Rejected("missing_image", f"an image of type {type(value).__name__}")
    if value.startswith("data:image/"):
        try:
            data = base64.b64decode(value.split(",", 1)[1], validate=True)
        except (IndexError, ValueError) as exc:
            raise Rejected("corrupt_image", "a data URI that is not valid base64") from exc
        return _store(data, images_dir)
    if value.startswith(("http://", "https://")):
        raise Rejected("missing_image", f"a URL ({value[:60]}); download the images first")
    path = Path(value).expanduser()
    if jail is not None:
        # Inside an unpacked archive, paths are relative to the archive and must stay in it.
        if path.is_absolute():
            raise Rejected("image_outside_archive", value)
        path = (base_dir / path).resolve()
        if not path.is_relative_to(jail):
            raise Rejected("image_outside_archive", value)
        if not path.is_file():
            raise Rejected("missing_image", f"{value} not found in the archive")
        return _store(path.read_bytes(), images_dir)
    path = (base_dir / path).resolve()
    if not path.is_file():
        raise Rejected("missing_image", f"{path} not found")
    width, height, _ = decode_size(path=path)
    return ImageInfo(path, width, height)


def _store(data: bytes, images_dir: Path) -> ImageInfo:
    width, height, fmt = decode_size(data=data)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    target = images_dir / f"{digest}{EXTENSIONS.get(fmt, '.img')}"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic: a reader never sees half an image
    return ImageInfo(target.resolve(), width, height)
