"""Shared helpers for the serve tests: synthetic images with a red box at a known place."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

# (width, height) -> the red box in original pixels (x1, y1, x2, y2), right/bottom exclusive.
# Sizes chosen to exercise down-scaling, up-scaling (min_pixels) and odd ratios.
CASES = {
    (640, 480): (160, 120, 480, 360),
    (300, 400): (75, 100, 225, 300),
    (1920, 1080): (480, 270, 1440, 810),
    (1000, 333): (250, 83, 750, 249),
}


def red_box_image(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 0, 0))
    img.save(path)
    return path
