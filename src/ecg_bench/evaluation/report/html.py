"""The static index.html: every table and figure in one self-contained file (figures as base64 PNG, no
network resource, no script), readable offline and attachable to a message. The figures of scores come
right after the configurations (people would rather look than read), the tables after them, the drawn
test items last."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from ecg_bench.evaluation.report.tables import Table

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.85em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
thead th { border-bottom: 2px solid #444; }
p.note, p.files { font-size: 0.8em; color: #555; max-width: 70em; }
figure { display: inline-block; vertical-align: top; margin: 1em 1.5em 1em 0; max-width: 100%; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; max-width: 40em; }
div.wide { overflow-x: auto; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def render(title: str, intro: Sequence[str], sections: Sequence[Table | tuple[Path, str]], root: Path) -> str:
    """The page: ``intro`` lines, then each section in order: a table (with links to its md / csv / tex files
    under ``root``) or a ``(png, caption)`` figure, embedded."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             *(f"<p>{html.escape(line)}</p>" for line in intro)]  # fmt: skip
    for section in sections:
        if isinstance(section, Table):
            t = section
            links = " · ".join(f'<a href="tables/{t.name}.{ext}">{ext}</a>' for ext in ("md", "csv", "tex"))
            parts += [f"<h2>{html.escape(t.title)}</h2>", f'<div class="wide">{t.html()}</div>',
                      f'<p class="files">files: {links}</p>']  # fmt: skip
        else:
            png, caption = section
            rel = png.relative_to(root).as_posix()
            parts.append(f'<figure>{_img(png)}<figcaption>{html.escape(caption)} (<a href="{rel}">{rel}</a>)</figcaption></figure>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
