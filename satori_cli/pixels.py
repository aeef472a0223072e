"""The pixel budget: one definition of how big an image the model sees, and how boxes map.

Qwen2.5-VL resizes every image with `smart_resize` to sides that are multiples of 28 and an
area inside [min_pixels, max_pixels], and it answers with boxes in the pixels of that
*resized* image. Training, the rewards, evaluation and serving must all agree on the
budget, or boxes are scored and drawn in the wrong place (the original SATORI baseline
numbers were off for exactly this reason). Everything reads it from here.

The budget travels between processes through the `MIN_PIXELS` / `MAX_PIXELS` environment
variables, the same ones ms-swift reads for Qwen2.5-VL, so a training run and the reward
plugin inside it can never disagree. ms-swift turns them into `IMAGE_MIN/MAX_TOKEN_NUM`
(pixels // 784, one visual token per 28x28 area) unless those are already set, and resizes by
the token counts, so both travel together.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from satori_cli.errors import SatoriError

FACTOR = 28  # patch_size (14) x spatial_merge_size (2) for Qwen2-VL and Qwen2.5-VL
MAX_RATIO = 200  # Qwen refuses images whose long side exceeds 200x the short side

PAPER_MIN_PIXELS = 256 * FACTOR * FACTOR  # 200704
PAPER_MAX_PIXELS = 512 * FACTOR * FACTOR  # 401408

Box = tuple[float, float, float, float]


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = PAPER_MIN_PIXELS,
    max_pixels: int = PAPER_MAX_PIXELS,
) -> tuple[int, int]:
    """Return the (height, width) Qwen2.5-VL resizes an image to. Note the order.

    The exact algorithm of qwen-vl-utils / transformers: round each side to a multiple
    of `factor`, then scale down (floor) into max_pixels or up (ceil) into min_pixels.

    >>> smart_resize(480, 640)
    (476, 644)

    Raises ValueError for non-positive sizes or an aspect ratio above 200, like Qwen's.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height} width={width}")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_RATIO}, "
            f"got {max(height, width) / min(height, width)}"
        )
    # round() is banker's rounding, as in Qwen's reference code
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class PixelBudget:
    """min/max pixels of the model's input image, plus the resize factor."""

    min_pixels: int = PAPER_MIN_PIXELS
    max_pixels: int = PAPER_MAX_PIXELS
    factor: int = FACTOR

    def __post_init__(self) -> None:
        if self.min_pixels <= 0 or self.max_pixels <= 0:
            raise ValueError("min_pixels and max_pixels must be positive")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")

    def __str__(self) -> str:
        """How messages name a budget: `200704-401408 px`."""
        return f"{self.min_pixels}-{self.max_pixels} px"

    # -- sizes -------------------------------------------------------------------------
    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the model input for an original image of that size."""
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def resized_wh(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input, in PIL's order."""
        h, w = self.resized_hw(height, width)
        return w, h

    # -- boxes -------------------------------------------------------------------------
    def to_original(self, boxes: Iterable[Sequence[float]], width: int, height: int) -> list[Box]:
        """Map boxes from resized-input pixels (what the model says) to original pixels."""
        in_h, in_w = self.resized_hw(height, width)
        sx, sy = width / in_w, height / in_h
        return [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in boxes]

    def to_resized(self, boxes: Iterable[Sequence[float]], width: int, height: int) -> list[Box]:
        """Map boxes from original pixels to resized-input pixels (what the model should say)."""
        in_h, in_w = self.resized_hw(height, width)
        sx, sy = in_w / width, in_h / height
        return [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in boxes]

    # -- transport ---------------------------------------------------------------------
    @property
    def token_pixels(self) -> int:
        """The area of one visual token (28x28 = 784): ms-swift counts the budget in these."""
        return self.factor * self.factor

    def env(self) -> dict[str, str]:
        """Environment variables that carry this budget to ms-swift and our reward plugin.

        The token counts are what ms-swift would derive (`pixels // 784`); exporting them too
        means a stale `IMAGE_*_TOKEN_NUM` in the caller's environment cannot win over the budget.
        """
        return {
            "MIN_PIXELS": str(self.min_pixels),
            "MAX_PIXELS": str(self.max_pixels),
            "IMAGE_MIN_TOKEN_NUM": str(self.min_pixels // self.token_pixels),
            "IMAGE_MAX_TOKEN_NUM": str(self.max_pixels // self.token_pixels),
        }

    def processor_kwargs(self) -> dict[str, int]:
        """Keyword arguments for a Qwen2.5-VL image processor or vLLM's mm_processor_kwargs."""
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PixelBudget:
        """The budget set by MIN_PIXELS / MAX_PIXELS, else the paper's; a bad value is one line."""
        return given_budget(*env_bounds(environ), "MIN_PIXELS/MAX_PIXELS in the environment")


def env_bounds(environ: Mapping[str, str] | None = None) -> tuple[int | None, int | None]:
    """MIN_PIXELS / MAX_PIXELS from the environment, None for one unset or empty.

    A value that is set but not a positive whole number (0, -1, `lots`, `1e6`) is refused in one
    line, never ignored: the user meant a budget, and another one would score and draw boxes in
    the wrong frame. There is no upper bound: a larger max_pixels only means less downscaling.
    """
    environ = os.environ if environ is None else environ
    bounds: list[int | None] = []
    for var in ("MIN_PIXELS", "MAX_PIXELS"):
        value = environ.get(var, "").strip()
        try:
            number = int(value) if value else None
        except ValueError:  # not a number, or one of more than 4300 digits
            number = 0
        if number is not None and number <= 0:
            raise SatoriError(
                f"invalid {var}={value[:60]!r} in the environment",
                hint="unset it or give a positive whole number of pixels",
            )
        bounds.append(number)
    return bounds[0], bounds[1]


def given_budget(min_pixels: int | None, max_pixels: int | None, given_by: str) -> PixelBudget:
    """The budget with the bounds given (the paper's for one not given); min above max is one line."""
    try:
        return PixelBudget(min_pixels or PAPER_MIN_PIXELS, max_pixels or PAPER_MAX_PIXELS)
    except ValueError as exc:
        raise SatoriError(str(exc), hint=f"check {given_by}") from exc


PAPER_BUDGET = PixelBudget()


def clamp_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Order the corners, clamp into the image and round to whole pixels (for drawing)."""
    x1, x2 = sorted((float(box[0]), float(box[2])))
    y1, y2 = sorted((float(box[1]), float(box[3])))
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))
