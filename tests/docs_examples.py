"""The README and docs/ pages as the tests read them: headings, anchors, links, code blocks.

The tests that run the documentation's examples take them from here, by page and heading, so
an example is run exactly as a reader copies it. `RUN_EXAMPLES` lists every example some test
runs; `tests/test_docs.py` checks each is still on its page, even where its test skips (no
curl, no Node.js).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def pages() -> list[Path]:
    """Every Markdown page a reader of the repository starts from or is sent to."""
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")]
    return [*top, *sorted(DOCS.glob("*.md"))]


_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    line: int


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their index."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for index, line in enumerate(text.splitlines()):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.startswith(fence):
            fence = None
        elif fence is None:
            lines.append((index, line))
    return lines


def headings(text: str) -> list[Heading]:
    found = []
    for index, line in prose_lines(text):
        match = _HEADING.match(line)
        if match:
            found.append(Heading(len(match.group(1)), match.group(2), index))
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text only
    text = re.sub(r"[*_`]", lambda m: "_" if m.group(0) == "_" else "", text)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(text):
        base = slug(heading.title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def section(page: Path, heading: str) -> str:
    """The text under `heading` (any level) up to the next heading of the same or a higher level."""
    text = page.read_text()
    lines = text.splitlines()
    found = [h for h in headings(text) if h.title == heading]
    assert len(found) == 1, f"{page.name}: {len(found)} headings named {heading!r}"
    start = found[0]
    after = [h.line for h in headings(text) if h.line > start.line and h.level <= start.level]
    end = after[0] if after else len(lines)
    return "\n".join(lines[start.line + 1 : end]) + "\n"


def code_blocks(text: str, language: str) -> list[str]:
    """The contents of the fenced blocks tagged `language`."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def examples(page: Path, heading: str, language: str) -> list[str]:
    """The `language` blocks under `heading` on `page` (the whole page when heading is "")."""
    return code_blocks(section(page, heading) if heading else page.read_text(), language)


@dataclass(frozen=True)
class Example:
    page: Path
    heading: str
    language: str

    def blocks(self) -> list[str]:
        return examples(self.page, self.heading, self.language)

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)} {self.heading or '(page)'} {self.language}"


FIRST_JOB_CURL = Example(README, "A first job", "sh")
CLIENTS_CURL = Example(DOCS / "clients.md", "curl", "sh")
PYTHON_CLIENT = Example(DOCS / "clients.md", "Python / Flask (without jobgate's code)", "python")
NODE_CLIENT = Example(DOCS / "clients.md", "Node.js", "ts")
TESTING_JOB_CODE = Example(DOCS / "clients.md", "Testing job code", "python")
WORKFLOWS = Example(DOCS / "workflows.md", "", "json")
QUEUE_NOT_ALLOWED = Example(DOCS / "flow-control.md", "Choose a job's queue", "json")
ATTEMPT_HISTORY_CURL = Example(DOCS / "flow-control.md", "Attempt history", "sh")
START_DEADLINE_CURL = Example(DOCS / "flow-control.md", "Start deadlines", "sh")
RATE_LIMIT_DECLARATION = Example(DOCS / "flow-control.md", "Declaring a rate limit", "python")
CONCURRENCY_KEYS = Example(DOCS / "flow-control.md", "Concurrency keys", "python")

RUN_EXAMPLES = (
    FIRST_JOB_CURL,
    CLIENTS_CURL,
    PYTHON_CLIENT,
    NODE_CLIENT,
    TESTING_JOB_CODE,
    WORKFLOWS,
    QUEUE_NOT_ALLOWED,
    ATTEMPT_HISTORY_CURL,
    START_DEADLINE_CURL,
    RATE_LIMIT_DECLARATION,
    CONCURRENCY_KEYS,
)
"""Every example a test runs (or compares with what it runs), by page and heading."""
