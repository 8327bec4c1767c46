"""The documentation a user reads: every relative link in the README and `docs/` points at
a file inside the repository, and every table is well-formed (one header, a separator,
rows with as many cells, no blank line inside)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "runtime/python/README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def cells(line: str) -> int:
    return len(re.sub(r"\\\||`[^`]*`", "x", line).strip().strip("|").split("|"))


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_links_stay_inside_the_repository(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO.resolve()), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_tables_are_well_formed(doc: Path) -> None:
    lines = doc.read_text().splitlines()
    in_code = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("|"):
            continue
        previous = lines[number - 1] if number else ""
        if previous.startswith("|"):
            continue  # checked with its table's first line
        rows = [line]
        for follow in lines[number + 1 :]:
            if not follow.startswith("|"):
                break
            rows.append(follow)
        where = f"{doc.name}:{number + 1}"
        assert len(rows) >= 3, f"{where}: a table needs a header, a separator and rows"
        assert re.fullmatch(r"\|( *:?-+:? *\|)+", rows[1]), f"{where}: the second line separates the header"
        width = cells(rows[0])
        for offset, row in enumerate(rows):
            assert cells(row) == width, f"{doc.name}:{number + 1 + offset}: {cells(row)} cells, the header has {width}"
        follow = lines[number + len(rows) : number + len(rows) + 2]
        assert not (len(follow) == 2 and follow[0] == "" and follow[1].startswith("| `")), (
            f"{where}: a row stands after a blank line below the table"
        )
