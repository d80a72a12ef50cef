"""The printed-ECG (``image``) and ``stacked`` representations: paper geometry, labels, blank zeros, values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_bench.config import RepresentationOptions, choice
from ecg_bench.errors import ConfigError, DataError, ShapeError
from ecg_bench.representations.base import REPRESENTATIONS, build_representation
from ecg_bench.representations.image import CAL_MM, INK, MAJOR, MINOR, PAPER, ImageOptions, ImageRepresentation, lead_grid
from ecg_bench.representations.stacked import StackedOptions, StackedRepresentation
from ecg_bench.signals.leads import LEADS

FS, L = 250.0, 2500  # 10 s segments, as a clinical printout


def _rep(**kw) -> ImageRepresentation:
    return ImageRepresentation(ImageOptions(**kw), fs=FS)


def _ink(img: np.ndarray) -> np.ndarray:
    """Pixels drawn in ink (traces, pulses, labels), not paper or grid: [H, W] bool."""
    return (img.max(-1) < 100) if img.dtype == np.uint8 else (img.max(0) < 100)


@pytest.mark.parametrize("layout", ["3x4", "6x2", "12x1"])
@pytest.mark.parametrize("size", [(224, 224), (1000, 720)])
def test_shape_dtype_and_declared_output(layout, size):
    rep = _rep(layout=layout, width=size[0], height=size[1])
    x = np.random.default_rng(0).normal(0, 0.3, (12, L)).astype(np.float32)
    out = rep(x)
    assert out.shape == (3, size[1], size[0]) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 255.0 and float(out.min()) == 0.0  # black ink is drawn
    spec = rep.output(L)
    assert spec.kind == "image" and spec.shape == (3, size[1], size[0]) and not spec.variable_length
    assert rep.represent(np.stack([x, x])).shape == (2, *spec.shape)


def test_registered_and_built_with_the_rate():
    assert {"image", "stacked"} <= set(REPRESENTATIONS.names())
    rep = build_representation(choice(RepresentationOptions, "image"), 500.0)
    assert isinstance(rep, ImageRepresentation) and rep.fs == 500.0
    assert isinstance(build_representation(choice(RepresentationOptions, "stacked"), 500.0), StackedRepresentation)


def test_grid_spacing_is_one_and_five_mm_at_25_mm_per_s():
    rep = _rep(layout="12x1", width=1000, height=720)
    sx, sy = rep.px_per_mm(L)
    # 12x1, 10 s at 25 mm/s: 250 mm of trace + the calibration margin; 12 rows of 25 mm
    assert sx == pytest.approx(1000 / (CAL_MM + 250.0)) and sy == pytest.approx(720 / (12 * 25.0))
    bg = rep.background(L)
    row = bg[int(round(0.5 * sy))]  # a row of pixels between grid lines, above the labels and calibration pulses
    major_x = np.flatnonzero((row == MAJOR).all(-1))
    assert np.allclose(np.diff(major_x)[:-1], 5 * sx, atol=1.0)  # major lines every 5 mm (the last: the paper's edge)
    minor_x = np.flatnonzero((row == MINOR).all(-1))
    assert np.allclose(np.diff(np.sort(np.r_[minor_x, major_x]))[:-1], sx, atol=1.0)  # a line every 1 mm
    col = bg[:, int(round((CAL_MM + 100.5) * sx))]  # away from pulses and labels
    major_y = np.flatnonzero((col == MAJOR).all(-1))
    assert np.allclose(np.diff(major_y)[:-1], 5 * sy, atol=1.0) and len(major_y) == 12 * 5 + 1
    # at 224 px the 1 mm lines would be < 2 px apart: only the 5 mm grid is drawn
    small = _rep(layout="12x1").background(L)
    assert not (small == MINOR).all(-1).any() and (small == MAJOR).all(-1).any()


def test_ten_mm_per_mv_and_the_calibration_pulse():
    rep = _rep(layout="12x1", width=1000, height=720)
    sx, sy = rep.px_per_mm(L)
    cells, _, _ = rep.cells(L)
    x = np.zeros((12, L), np.float32)
    x[0, 1000:1010] = 1.0  # a 1 mV, 40 ms pulse in lead I (median 0: the baseline stays)
    img = np.asarray(rep.draw(x))
    cell = next(c for c in cells if c.lead == 0)
    x0, x1 = int((cell.x_mm + 99) * sx), int((cell.x_mm + 102) * sx)  # around the pulse, 4 s = 100 mm in
    ys = np.flatnonzero(_ink(img[:, x0:x1]).any(1))
    top = ys.min()
    assert top == pytest.approx((cell.baseline_mm - 10.0) * sy, abs=1.5)  # 1 mV = 10 mm up
    # calibration pulse: ink from the baseline to 10 mm above it, at 2.5-7.5 mm (0.2 s) from the left edge
    bg = rep.background(L)
    pulse = _ink(bg[:, int(round(5.0 * sx))])
    pulse_rows = np.flatnonzero(pulse[: int(cell.top_mm * sy + 25 * sy)])
    assert pulse_rows.min() == pytest.approx((cell.baseline_mm - 10.0) * sy, abs=1.5)


def test_lead_labels_sit_over_their_own_lead_in_the_canonical_order():
    """3x4 columns read I II III | aVR aVL aVF | V1 V2 V3 | V4 V5 V6 (the original swapped aVR and aVL): a signal
    in one lead only is drawn in the cell that carries that lead's label, and the label is drawn there."""
    rep = _rep(layout="3x4", width=1000, height=720)
    sx, sy = rep.px_per_mm(L)
    cells, _, _ = rep.cells(L)
    assert [[LEADS[i] for i in row] for row in lead_grid("3x4")] == [
        ["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]  # fmt: skip
    assert [LEADS[c.lead] for c in cells][-1] == "II"  # the rhythm strip
    assert [[LEADS[i] for i in row] for row in lead_grid("6x2")] == [[a, b] for a, b in zip(LEADS[:6], LEADS[6:])]
    assert [LEADS[i] for (i,) in lead_grid("12x1")] == list(LEADS)
    blank = np.asarray(rep.draw(np.zeros((12, L), np.float32)))
    for lead in ("aVL", "V5"):
        x = np.zeros((12, L), np.float32)
        x[LEADS.index(lead)] = np.sin(np.arange(L) / FS * 2 * np.pi * 1.3) * 0.8  # large waves in that lead only
        diff = (np.asarray(rep.draw(x)) != blank).any(-1)
        ys, xs = np.nonzero(diff)
        cell = next(c for c in cells if LEADS[c.lead] == lead)
        assert xs.min() >= cell.x_mm * sx - 2 and xs.max() <= (cell.x_mm + cell.width_mm) * sx + 2
        assert abs(np.median(ys) - cell.baseline_mm * sy) < 0.5 * 25 * sy
        # its label: ink in the box at the cell's top left, on the paper without any trace
        lx, ly = rep.label_xy(cell, sx, sy)
        box = _ink(rep.background(L)[int(ly) : int(ly + 8 * sy), int(lx) : int(lx + 12 * sx)])
        assert box.sum() > 20
    # aVL sits in row 2, column 2; aVR in row 1, column 2
    avl = next(c for c in cells if LEADS[c.lead] == "aVL")
    avr = next(c for c in cells if LEADS[c.lead] == "aVR")
    assert avl.x_mm == avr.x_mm and avl.top_mm == avr.top_mm + 25.0


def test_zeros_render_a_blank_printout_grid_labels_and_flat_traces():
    rep = _rep(layout="6x2", width=1000, height=720)
    sx, sy = rep.px_per_mm(L)
    cells, _, _ = rep.cells(L)
    img = np.asarray(rep.draw(np.zeros((12, L), np.float32)))
    bg = rep.background(L)
    changed = (img != bg).any(-1)
    ys, xs = np.nonzero(changed)
    baselines = np.array(sorted({round(c.baseline_mm * sy) for c in cells}))
    assert np.abs(ys[:, None] - baselines[None]).min(1).max() <= rep.line_width  # only flat lines on the baselines
    for c in cells:  # every lead has its flat trace across its whole cell
        y = int(round(c.baseline_mm * sy))
        x0, x1 = int(c.x_mm * sx) + 1, int((c.x_mm + c.width_mm) * sx) - 1
        assert _ink(img[y - 1 : y + 2, x0:x1]).any(0).all()
    assert (bg == MAJOR).all(-1).any() and (bg == PAPER).all(-1).any() and (bg == INK).all(-1).any()
    # the tensor the model reads under the zeros condition is this picture
    assert torch.equal(rep(np.zeros((12, L), np.float32)), torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32)))


def test_whole_segment_per_lead_widens_the_paper():
    a, b = _rep(layout="3x4"), _rep(layout="3x4", whole_segment_per_lead=True)
    ca, wa, _ = a.cells(L)
    cb, wb, _ = b.cells(L)
    assert wa == pytest.approx(CAL_MM + 250) and wb == pytest.approx(CAL_MM + 4 * 250)
    assert all(c.start == 0 and c.stop == L for c in cb)
    assert [(c.start, c.stop) for c in ca[:4]] == [(0, 625), (625, 1250), (1250, 1875), (1875, 2500)]


def test_augmentations_are_seeded_training_only_and_keep_the_shape():
    x = np.random.default_rng(1).normal(0, 0.3, (12, 500)).astype(np.float32)
    plain = _rep()(x)
    aug = _rep(augment=True, seed=3)
    outs = [aug(x) for _ in range(12)]
    assert all(o.shape == plain.shape for o in outs)
    changed = sum(not torch.equal(o, plain) for o in outs)
    assert 3 <= changed <= 12  # p = 0.6 per picture
    again = _rep(augment=True, seed=3)
    assert all(torch.equal(o, again(x)) for o in outs)  # the same seed, the same pictures
    ev = aug.for_evaluation()
    assert not ev.options.augment and all(torch.equal(ev(x), plain) for _ in range(3))


def test_bad_options_and_inputs_are_refused_with_the_value():
    with pytest.raises(ConfigError, match="layout must be one of 3x4, 6x2, 12x1, got '4x3'"):
        ImageOptions(layout="4x3").check()
    with pytest.raises(ConfigError, match="width must be an integer in \\[32, 8192\\] pixels, got 10"):
        ImageOptions(width=10).check()
    with pytest.raises(ConfigError, match="image representation: row_mm must be in \\[5, 200\\] mm, got 1"):
        ImageRepresentation(ImageOptions(row_mm=1), fs=FS)  # options built in Python are checked by the representation
    with pytest.raises(ConfigError, match="fs must be a positive rate"):
        ImageRepresentation(fs=0)
    with pytest.raises(ShapeError):
        _rep()(np.zeros((8, 500), np.float32))
    x = np.zeros((12, 500), np.float32)
    x[3, 7] = np.nan
    with pytest.raises(DataError, match="1 NaN/inf"):
        _rep()(x)


def test_stacked_is_min_max_over_the_segment_to_0_255_on_three_channels():
    x = np.zeros((12, 100), np.float32)
    x[0, 10] = 2.0  # max
    x[5, 20] = -1.0  # min
    x[7, 30] = 0.5
    out = StackedRepresentation()(x)
    assert out.shape == (3, 12, 100) and out.dtype == torch.float32
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    # (x - min) / (max - min + eps) * 255, truncated as the original's uint8 cast
    assert out[0, 5, 20] == 0 and out[0, 0, 10] == 254 and out[0, 0, 0] == np.floor(1 / (3 + 1e-6) * 255) == 84
    assert out[0, 7, 30] == np.floor(1.5 / (3 + 1e-6) * 255) == 127
    assert StackedRepresentation().output(100).kind == "image" and StackedRepresentation().shape(100) == (3, 12, 100)
    assert float(StackedRepresentation()(np.zeros((12, 100), np.float32)).abs().max()) == 0.0  # zeros: all 0
    with pytest.raises(ConfigError, match="eps must be in"):
        StackedOptions(eps=0).check()
