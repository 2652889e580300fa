"""README.md, model_card.md and docs/*.md link only to files (and headings) that exist.

Every relative markdown link or image must resolve to a file in the repository, a `#anchor` must name a heading
of the target page (GitHub's slugs), and every `docs/...` file the pages cite (benchmark JSON, pictures) must be
there: a figure is only as good as the file that backs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "model_card.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CITED = re.compile(r"(?<![\w/.-])docs/[\w.-]+\.(?:json|png|md)\b")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(without_code_blocks(page.read_text(encoding="utf-8")))}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of `page` that names a missing file or heading, as `page: target (why)`."""
    problems = []
    for target in LINK.findall(without_code_blocks(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        name = page.relative_to(root)
        if not dest.exists():
            problems.append(f"{name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{name}: {target} (no heading #{anchor} in {dest.name})")
    return problems


def missing_cited_files(page: Path, root: Path = ROOT) -> list[str]:
    """Every `docs/...` file named in the page's text (commands included) that does not exist."""
    cited = set(CITED.findall(page.read_text(encoding="utf-8")))
    return sorted(f"{page.relative_to(root)}: {c}" for c in cited if not (root / c).exists())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_docs_files_exist(page):
    assert missing_cited_files(page) == []


def test_readme_speed_figures_name_their_json():
    """Each benchmark table in README's Speed section follows a paragraph naming the `docs/*.json` behind it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    speed = text[text.index("\n## Speed"):]
    speed = speed[:speed.index("\n## ", 1)]
    blocks = re.split(r"\n\s*\n", speed)
    tables = [i for i, block in enumerate(blocks) if block.lstrip().startswith("|")]
    assert tables, "no table in the Speed section"
    for i in tables:
        before = "\n".join(blocks[max(0, i - 2):i])
        assert CITED.search(before), f"Speed table {blocks[i].splitlines()[0]!r} names no docs/*.json before it"


def test_checker_finds_broken_links(tmp_path):
    """The checks above can fail: a missing file, a missing heading and a missing cited file are all reported,
    while links inside code blocks and external links are left alone."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# A `code` heading: yes\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n[ok](docs/there.md#a-code-heading-yes) [self](#top) [web](https://example.org/x)\n"
        "[gone](docs/gone.md) [bad anchor](docs/there.md#nope) ![pic](docs/pic.png)\n"
        "```bash\n[in code](nowhere.md)\n# not a heading\n```\n"
        "Figures: `docs/bench_missing.json`.\n", encoding="utf-8")
    assert broken_links(page, tmp_path) == [
        "README.md: docs/gone.md (no such file)",
        "README.md: docs/there.md#nope (no heading #nope in there.md)",
        "README.md: docs/pic.png (no such file)",
    ]
    assert missing_cited_files(page, tmp_path) == ["README.md: docs/bench_missing.json",
                                                   "README.md: docs/gone.md", "README.md: docs/pic.png"]
