"""Every relative link in the README and docs/ points at a file or folder that exists (an
anchor after `#` must name a heading of the linked Markdown file)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
            *[p for p in [ROOT / "CONTRIBUTING.md"] if p.exists()]]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", FENCE.sub("", page.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    problems = []
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path) if path else page
        line = text[: match.start()].count("\n") + 1
        if not resolved.exists():
            problems.append(f"{page.relative_to(root)}:{line}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in _anchors(resolved):
            problems.append(f"{page.relative_to(root)}:{line}: {target} (no heading #{anchor})")
    return problems


def test_relative_links_resolve():
    problems = [p for page in _pages() for p in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_the_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A title\n", encoding="utf-8")
    page.write_text("[ok](there.md) [ok](there.md#a-title) [gone](missing.md) [bad](there.md#nope) "
                    "[web](https://example.org/x)\n```\n[in code](nothing.md)\n```\n", encoding="utf-8")
    assert broken_links(page, tmp_path) == ["page.md:1: missing.md (no such file)",
                                            "page.md:1: there.md#nope (no heading #nope)"]
