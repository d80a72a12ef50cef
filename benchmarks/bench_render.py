"""Images per second of the ``image`` representation vs a matplotlib figure per image, as the original ECG-Bench.

Run by hand (never timed in tests), from the repository root with ../shared beside it:

    python benchmarks/bench_render.py --repeats 3 --images 60
    python benchmarks/bench_render.py --smoke   # seconds: 1 picture per method, once (tests/test_benchmarks.py)

The segments are the 10 real PTB-XL records in ``<data-dir>/records500/06000/`` (12 leads, 10 s),
resampled to 250 Hz (2500 samples, polyphase), the same segments for every method. Methods:

(a) ours: ``ImageRepresentation(...)(segment)`` -> float32 ``[3, H, W]`` tensor, at 224 x 224 and at
    1000 x 720, layout 3x4 (and 6x2 with every lead showing the whole segment, the original's look);
(b) the original ECG-Bench method, REIMPLEMENTED here from what its ``utils/viz.py`` calls
    (``ecg_plot.get_plot_as_image``: one matplotlib figure per ECG with ``ecg_plot.plot``'s paper grid, major
    and minor grid lines through ``ax.grid``, 12 ``ax.plot`` traces of the whole segment in 6 rows x 2
    columns, lead names by ``ax.text``; the canvas drawn and read back as an RGB array), at 1000 x 720
    (figure 10 x 7.2 in at 100 dpi), then turned into the same float32 ``[3, H, W]`` tensor.

Each method renders ``--images`` pictures (cycling over the 10 segments) after one warm-up picture; the
best of ``--repeats`` runs is reported. torch runs on one thread (as in a data-loader worker). The
machine's load average is printed with the figures: on a shared machine they depend on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ecg_bench.representations.image import ImageOptions, ImageRepresentation
from ecg_bench.signals.leads import LEADS

DEFAULT_DATA = Path(os.environ.get("ECG_BENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ptbxl"
FS = 250


def load_segments(data_dir: Path) -> list[np.ndarray]:
    """The PTB-XL records as float32 [12, 2500] mV segments at 250 Hz (canonical lead order)."""
    import wfdb
    from scipy.signal import resample_poly

    segs = []
    for hea in sorted((data_dir / "records500" / "06000").glob("*_hr.hea")):
        sig, meta = wfdb.rdsamp(str(hea.with_suffix("")))
        names = [n.upper() for n in meta["sig_name"]]
        order = [names.index(n.upper()) for n in LEADS]
        x = resample_poly(sig[:, order].T, 1, 2, axis=-1)  # 500 -> 250 Hz
        segs.append(np.ascontiguousarray(x, dtype=np.float32))
    if not segs:
        raise SystemExit(f"no PTB-XL records under {data_dir}/records500/06000")
    return segs


def original_plot_as_image(ecg: np.ndarray, sample_rate: int = FS) -> np.ndarray:
    """ecg_plot.plot + get_plot_as_image, as the original calls it: one matplotlib figure per ECG -> uint8 [H, W, 3].

    Reimplemented (ecg_plot is not a dependency): 6 rows x 2 columns, each lead the whole segment, the paper grid of
    ecg_plot (major every 0.2 s / 0.5 mV, minor every 0.04 s / 0.1 mV), lead names, figure 10 x 7.2 in at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import AutoMinorLocator

    rows, columns, row_height = 6, 2, 6
    secs = ecg.shape[1] / sample_rate
    lead_index = ["I", "II", "III", "aVL", "aVR", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]  # the original's order
    fig, ax = plt.subplots(figsize=(10, 7.2), dpi=100)
    fig.subplots_adjust(hspace=0, wspace=0, left=0, right=1, bottom=0, top=1)
    x_max, y_min, y_max = columns * secs, row_height / 4 - (rows / 2) * row_height, row_height / 4
    ax.set_xticks(np.arange(0, x_max, 0.2))
    ax.set_yticks(np.arange(y_min, y_max, 0.5))
    ax.minorticks_on()
    ax.xaxis.set_minor_locator(AutoMinorLocator(5))
    ax.grid(which="major", linestyle="-", linewidth=0.5, color=(1, 0, 0))
    ax.grid(which="minor", linestyle="-", linewidth=0.5, color=(1, 0.7, 0.7))
    ax.tick_params(labelbottom=False, labelleft=False, length=0, which="both")
    ax.set_ylim(y_min, y_max)
    ax.set_xlim(0, x_max)
    step = 1.0 / sample_rate
    for c in range(columns):
        for i in range(rows):
            lead = c * rows + i
            y_offset = -(row_height / 2) * i
            x_offset = secs * c
            ax.text(x_offset + 0.07, y_offset - 0.5, lead_index[lead], fontsize=9)
            ax.plot(np.arange(0, ecg.shape[1] * step, step)[: ecg.shape[1]] + x_offset, ecg[lead] + y_offset,
                    linewidth=0.5, color=(0, 0, 0))  # fmt: skip
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def timed(fn, segments: list[np.ndarray], n: int, repeats: int) -> float:
    """Best images/s over ``repeats`` runs of ``n`` pictures."""
    fn(segments[0])
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(segments[i % len(segments)])
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--images", type=int, default=60, help="pictures per run and method")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a check that the script runs, not a measurement: 1 picture, 1 repeat")
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.repeats = 1, 1
    torch.set_num_threads(1)
    segs = load_segments(args.data_dir)

    def to_tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))

    methods = {
        "original: matplotlib figure per image (6x2, 1000x720)": lambda x: to_tensor(original_plot_as_image(x)),
    }
    for layout, w, h, whole in (("3x4", 224, 224, False), ("3x4", 1000, 720, False), ("6x2", 1000, 720, True)):
        rep = ImageRepresentation(ImageOptions(layout=layout, width=w, height=h, whole_segment_per_lead=whole), fs=FS)
        methods[f"ours: image representation ({layout}{', whole segment' if whole else ''}, {w}x{h})"] = rep
    print(f"{len(segs)} PTB-XL segments [12, {segs[0].shape[1]}] at {FS} Hz; {args.images} images x best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f}; {platform.machine()}, torch {torch.__version__}")  # fmt: skip
    rates = {name: timed(fn, segs, args.images, args.repeats) for name, fn in methods.items()}
    base = next(iter(rates.values()))
    print("| method | images/s | ms/image | vs original |\n| --- | --- | --- | --- |")
    for name, r in rates.items():
        print(f"| {name} | {r:.1f} | {1000 / r:.2f} | {r / base:.1f}x |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
