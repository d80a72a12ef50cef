"""The 12-lead ECG as the printout a clinician reads: float32 ``[3, H, W]`` pixel values 0-255.

Standard paper: 1 mm minor and 5 mm major grid boxes, 25 mm/s, 10 mm/mV, a 1 mV x 0.2 s calibration
pulse at the start of every row, and lead labels from the canonical lead order
(``ecg_bench.signals.leads.LEADS``; the original ECG-Bench labelled aVR and aVL the wrong way round).

Layouts (``ImageOptions.layout``), each cell holding one lead:

- ``3x4``: 3 rows x 4 columns (I II III | aVR aVL aVF | V1 V2 V3 | V4 V5 V6) and a lead II rhythm strip;
- ``6x2``: 6 rows x 2 columns (limb leads | precordial leads);
- ``12x1``: one lead per row.

As on a real printout the columns show consecutive time windows of the segment at 25 mm/s (a 10 s
segment in 3x4: 2.5 s per lead, the rhythm strip all 10 s). ``whole_segment_per_lead`` makes every cell
show the whole segment instead (as the original's ecg_plot figures do; sensible for short segments).
The paper is then stretched to ``width`` x ``height`` pixels, so a mm is ``px_per_mm()`` pixels in x and y.

Speed: the grid, labels and calibration pulses are the same for every segment, so they are drawn once
per size and layout (numpy) and each segment only adds its 12-13 polylines (Pillow's ``ImageDraw.line``,
C code): no matplotlib figure per sample (benchmarks/bench_render.py measures both).

Augmentations (``augment``: rotation, Gaussian blur, brightness and contrast, the whole set applied with
probability 0.6 as the original) are written here with Pillow, because torchvision does not import beside
the CPU torch this project is tested with. Evaluation conditions act on the signal before this
representation, so ``zeros`` draws a blank printout (grid, labels, flat traces).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from ecg_bench.config import RepresentationOptions
from ecg_bench.errors import ConfigError, DataError, ShapeError
from ecg_bench.representations.base import REPRESENTATIONS, Representation
from ecg_bench.signals.leads import LEADS

MM_PER_S = 25.0
"""Paper speed."""
MM_PER_MV = 10.0
"""Gain."""
CAL_MM = 10.0
"""Width of the calibration pulse's margin at the start of every row (pulse 5 mm = 0.2 s wide, 10 mm = 1 mV high)."""
LAYOUTS = ("3x4", "6x2", "12x1")

PAPER = (255, 255, 255)
MINOR = (255, 212, 212)
MAJOR = (235, 130, 130)
INK = (0, 0, 0)


@dataclass
class ImageSettings:
    """How a segment is drawn as a 12-lead printout (the image representation's options; ``ecg-bench render``'s)."""

    layout: str = "3x4"
    """3x4 (with a lead II rhythm strip), 6x2 or 12x1."""
    width: int = 224
    """Image width in pixels (224 for the vision encoders; 1000 with height 720 for the original's look)."""
    height: int = 224
    """Image height in pixels."""
    row_mm: float = 25.0
    """Height of one row of leads on the paper, in mm (10 mm = 1 mV); taller waves run into the next row."""
    whole_segment_per_lead: bool = False
    """Every lead shows the whole segment (as the original's ecg_plot); default: consecutive windows, as a printout."""
    line_width: int = 0
    """Trace width in pixels (0 = 1 px per 400 px of the smaller image side, at least 1)."""
    min_grid_px: float = 2.0
    """Minor (1 mm) grid lines are drawn only where they are at least this many pixels apart (else a blur of pink)."""
    augment: bool = False
    """Training augmentations (rotation +-5 deg, blur sigma 0-1.5, brightness and contrast x0.8-1.2; each with
    p=0.5, the set with p=0.6, as the original). Never used in evaluation (``for_evaluation``)."""
    seed: int = 0
    """Seed of the augmentations."""

    def problems(self) -> list[str]:
        p = []
        if self.layout not in LAYOUTS:
            p.append(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 32 <= v <= 8192):
                p.append(f"{name} must be an integer in [32, 8192] pixels, got {v!r}")
        if not (isinstance(self.row_mm, int | float) and 5.0 <= self.row_mm <= 200.0):
            p.append(f"row_mm must be in [5, 200] mm, got {self.row_mm!r}")
        if not (isinstance(self.line_width, int) and 0 <= self.line_width <= 20):
            p.append(f"line_width must be an integer in [0, 20] (0 = auto), got {self.line_width!r}")
        if not (isinstance(self.min_grid_px, int | float) and self.min_grid_px >= 0):
            p.append(f"min_grid_px must be >= 0, got {self.min_grid_px!r}")
        return p

    def check(self) -> None:
        """Raise ConfigError listing the problems (for options built in Python, not through the config)."""
        p = self.problems()
        if p:
            raise ConfigError([f"image representation: {m}" for m in p])


@dataclass
class ImageOptions(ImageSettings, RepresentationOptions):
    """The printed 12-lead ECG as a picture, float32 [3, height, width] 0-255 (for vision encoders)."""


def lead_grid(layout: str) -> list[list[int]]:
    """Rows of lead indices (into LEADS) per layout, the rhythm strip not included."""
    if layout == "3x4":
        return [[c * 3 + r for c in range(4)] for r in range(3)]
    if layout == "6x2":
        return [[c * 6 + r for c in range(2)] for r in range(6)]
    return [[r] for r in range(12)]


@dataclass(frozen=True)
class Cell:
    """One lead's place on the paper (mm) and the samples it shows."""

    lead: int
    x_mm: float
    """Left edge of the trace area (after the calibration margin for the first column)."""
    top_mm: float
    baseline_mm: float
    width_mm: float
    start: int
    stop: int


@REPRESENTATIONS.register("image", options=ImageOptions)
class ImageRepresentation(Representation):
    """Segment ``[12, L]`` (mV) -> the printed ECG, float32 ``[3, height, width]`` with values 0-255."""

    kind = "image"
    needs_fs = True

    def __init__(self, options: ImageOptions | None = None, fs: float = 250.0, **fields) -> None:
        super().__init__()
        if options is not None and fields:
            raise TypeError("image representation: pass an ImageOptions or its fields, not both")
        self.options = options or ImageOptions(**fields)
        self.options.check()
        if not (isinstance(fs, int | float) and math.isfinite(fs) and fs > 0):
            raise ConfigError([f"image representation: fs must be a positive rate in Hz, got {fs!r}"])
        self.fs = float(fs)
        self._rng = np.random.default_rng(self.options.seed)
        self._backgrounds: dict[int, np.ndarray] = {}
        self._planar: dict[int, np.ndarray] = {}

    def for_evaluation(self) -> "ImageRepresentation":
        if not self.options.augment:
            return self
        return ImageRepresentation(dataclasses.replace(self.options, augment=False), self.fs)

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng([self.options.seed, int(seed)])

    def shape(self, segment_len: int) -> tuple[int, ...]:
        return (3, self.options.height, self.options.width)

    # ------------------------------------------------------------------ geometry
    def cells(self, segment_len: int) -> tuple[list[Cell], float, float]:
        """Every lead's cell (the rhythm strip last, for 3x4), and the paper's width and height in mm."""
        o, L = self.options, int(segment_len)
        grid = lead_grid(o.layout)
        cols = len(grid[0])
        seconds = L / self.fs
        col_mm = seconds * MM_PER_S if o.whole_segment_per_lead else seconds * MM_PER_S / cols
        rows = len(grid) + (1 if o.layout == "3x4" else 0)
        cells = []
        for r, row in enumerate(grid):
            for c, lead in enumerate(row):
                start, stop = (0, L) if o.whole_segment_per_lead else (round(c * L / cols), round((c + 1) * L / cols))
                cells.append(Cell(lead, CAL_MM + c * col_mm, r * o.row_mm, (r + 0.6) * o.row_mm, col_mm, start, stop))
        if o.layout == "3x4":  # lead II rhythm strip: the whole segment at 25 mm/s
            r = len(grid)
            cells.append(Cell(1, CAL_MM, r * o.row_mm, (r + 0.6) * o.row_mm, seconds * MM_PER_S, 0, L))
        return cells, CAL_MM + cols * col_mm, rows * o.row_mm

    def px_per_mm(self, segment_len: int) -> tuple[float, float]:
        """Pixels per mm of paper in x and y for ``segment_len``-sample segments."""
        _, w_mm, h_mm = self.cells(segment_len)
        return self.options.width / w_mm, self.options.height / h_mm

    # ------------------------------------------------------------------ drawing
    def background(self, segment_len: int) -> np.ndarray:
        """The paper for ``segment_len``-sample segments: grid, calibration pulses, lead labels (uint8 [H, W, 3])."""
        bg = self._backgrounds.get(segment_len)
        if bg is None:
            bg = self._backgrounds[segment_len] = self._draw_background(segment_len)
        return bg

    def _draw_background(self, segment_len: int) -> np.ndarray:
        o = self.options
        cells, w_mm, h_mm = self.cells(segment_len)
        sx, sy = o.width / w_mm, o.height / h_mm
        img = np.empty((o.height, o.width, 3), np.uint8)
        img[:] = PAPER
        for major in (False, True):
            for axis, scale, extent, n in ((1, sx, w_mm, o.width), (0, sy, h_mm, o.height)):
                if not major and scale < o.min_grid_px:
                    continue
                mm = np.arange(0, math.floor(extent) + 1, 5 if major else 1)
                px = np.unique(np.clip(np.round(mm * scale).astype(int), 0, n - 1))
                if axis == 1:
                    img[:, px] = MAJOR if major else MINOR
                else:
                    img[px, :] = MAJOR if major else MINOR
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        lw = self.line_width
        font = _font(max(8, round(o.row_mm * sy * 0.22)))
        for top in sorted({c.top_mm for c in cells}):
            base = top + 0.6 * o.row_mm
            xs = np.array([0.0, 2.5, 2.5, 7.5, 7.5, CAL_MM]) * sx
            ys = (base - np.array([0, 0, 1, 1, 0, 0]) * MM_PER_MV) * sy
            draw.line(_points(xs, ys), fill=INK, width=lw)
        for c in cells:
            draw.text(self.label_xy(c, sx, sy), LEADS[c.lead], fill=INK, font=font)
        return np.asarray(pil).copy()

    @staticmethod
    def label_xy(cell: Cell, sx: float, sy: float) -> tuple[float, float]:
        """Pixel position of a cell's lead label (top left of the cell, 1 mm in)."""
        return ((cell.x_mm + 1.0) * sx, (cell.top_mm + 1.0) * sy)

    @property
    def line_width(self) -> int:
        o = self.options
        return o.line_width or max(1, round(min(o.width, o.height) / 400))

    def ink(self, segment: np.ndarray) -> np.ndarray:
        """Where one segment's traces fall on the paper: bool ``[H, W]``.

        The traces are drawn 1 px wide into a mask (Pillow, C code) and thickened to ``line_width`` by OR-ing shifted
        copies of the mask: Pillow's own wide lines cost about 3x as much (25 vs 8 ms at 1000 x 720, measured)."""
        x = _check(segment)
        L = x.shape[1]
        o = self.options
        cells, w_mm, h_mm = self.cells(L)
        sx, sy = o.width / w_mm, o.height / h_mm
        mask = Image.new("L", (o.width, o.height), 0)
        draw = ImageDraw.Draw(mask)
        for c in cells:
            v = x[c.lead, c.start : c.stop]
            v = v - np.median(v)  # each trace on its row's baseline, as the printer's baseline filter does
            xs = (c.x_mm + np.arange(len(v)) / self.fs * MM_PER_S) * sx
            ys = np.clip((c.baseline_mm - v * MM_PER_MV) * sy, 0, o.height - 1)
            draw.line(_points(xs, ys), fill=255, width=1)
        ink = np.asarray(mask) > 0
        lw = self.line_width
        if lw > 1:
            thick = ink.copy()
            for dy in range(lw):
                for dx in range(lw):
                    if dy or dx:
                        thick[dy:, dx:] |= ink[: o.height - dy, : o.width - dx]
            ink = thick
        return ink

    def draw_array(self, segment: np.ndarray) -> np.ndarray:
        """The printout of one segment ``[12, L]`` in mV, uint8 ``[H, W, 3]`` (no augmentation)."""
        ink = self.ink(segment)
        img = self.background(np.asarray(segment).shape[-1]).copy()
        img[ink] = INK
        return img

    def draw(self, segment: np.ndarray) -> Image.Image:
        """The printout of one segment ``[12, L]`` in mV, as a Pillow RGB image (no augmentation)."""
        return Image.fromarray(self.draw_array(segment))

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        if self.options.augment and self._rng.random() < 0.6:
            img = np.asarray(self.augment_image(self.draw(segment)))
            return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
        # the paper is kept channels-first in float32, so a picture is one copy and one masked write (no per-sample
        # uint8 -> float transpose, which costs more than the drawing at 1000 x 720)
        ink = self.ink(segment)
        L = np.asarray(segment).shape[-1]
        planar = self._planar.get(L)
        if planar is None:
            planar = self._planar[L] = np.ascontiguousarray(self.background(L).transpose(2, 0, 1), dtype=np.float32)
        out = planar.copy()
        out.reshape(3, -1)[:, np.flatnonzero(ink)] = np.asarray(INK, np.float32)[:, None]  # flat indices: 2.5x a bool mask
        return torch.from_numpy(out)

    def augment_image(self, pil: Image.Image) -> Image.Image:
        """One random draw of the augmentations (each with p=0.5) on a drawn printout."""
        rng = self._rng
        if rng.random() < 0.5:
            pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.8, 1.2))
        if rng.random() < 0.5:
            pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.8, 1.2))
        if rng.random() < 0.5:
            pil = pil.rotate(rng.uniform(-5.0, 5.0), resample=Image.Resampling.BILINEAR, fillcolor=PAPER)
        if rng.random() < 0.5:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.0, 1.5)))
        return pil


def render_store_segment(store_dir: str | Path, index: int, options: ImageOptions | None = None) -> Image.Image:
    """Segment ``index`` of the segment store at ``store_dir``, as a printout (augmented once when ``options.augment``)."""
    from ecg_bench.data.store import SegmentStore

    if not SegmentStore.exists(store_dir):
        raise DataError(f"{store_dir}: not a segment store (no meta.json / signals.npy written by ecg-bench); "
                        f"build one with `ecg-bench data --output_dir DIR` (the store is DIR/store)")  # fmt: skip
    store = SegmentStore(store_dir)
    if not 0 <= index < len(store):
        raise DataError(f"--index {index} is out of range: the store {store_dir} holds {len(store)} segments "
                        f"(0..{len(store) - 1})")  # fmt: skip
    rep = ImageRepresentation(options, fs=store.fs)
    pil = rep.draw(store.signal(index))
    return rep.augment_image(pil) if rep.options.augment else pil


def _points(xs: np.ndarray, ys: np.ndarray) -> list[float]:
    return np.column_stack([xs, ys]).ravel().tolist()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(LEADS) or x.shape[1] < 2:
        raise ShapeError("image representation input", x.shape, f"[{len(LEADS)}, L >= 2]")
    if not np.isfinite(x).all():
        raise DataError(f"image representation input has {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x
