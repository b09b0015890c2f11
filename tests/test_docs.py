"""The README and docs/: every relative link and anchor resolves, every page is reachable from
the README, every example the tests run is still there, Python and JSON blocks parse, and every
setting and command is documented.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import typer
from pydantic import BaseModel

from cli.main import app as cli_app
from shared.settings import Settings
from tests.docs_examples import (
    DOCS,
    README,
    ROOT,
    RUN_EXAMPLES,
    Example,
    anchors,
    code_blocks,
    pages,
    prose_lines,
    slug,
)

# [text](target) and ![alt](target), and reference definitions `[name]: target`.
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_INLINE_CODE = re.compile(r"(`+).*?\1")


def _links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link outside code blocks and code spans."""
    found: list[tuple[int, str]] = []
    for index, line in prose_lines(page.read_text()):
        prose = _INLINE_CODE.sub("", line)
        targets = _INLINE_LINK.findall(prose)
        reference = _REFERENCE.match(prose)
        if reference:
            targets.append(reference.group(1))
        found.extend((index + 1, target) for target in targets)
    return found


def _is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None  # https:, mailto:, ...


def _page_ids() -> list[str]:
    return [str(path.relative_to(ROOT)) for path in pages()]


@pytest.mark.parametrize("page", pages(), ids=_page_ids())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for line, target in _links(page):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{line}: {target}"
        if not destination.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and destination.suffix == ".md":
            if unquote(anchor) not in anchors(destination.read_text()):
                broken.append(f"{where} (no such heading in {destination.name})")
        elif anchor:
            broken.append(f"{where} (an anchor into a file that is not Markdown)")
    assert not broken, "\n".join(broken)


def test_the_slugs_are_githubs() -> None:
    assert slug("Adding a job type: one declaration, one function") == (
        "adding-a-job-type-one-declaration-one-function"
    )
    assert slug("Python / Flask (without jobgate's code)") == "python--flask-without-jobgates-code"
    assert slug("`jobgate inspect`") == "jobgate-inspect"
    assert slug("[0.1.0]") == "010"
    assert slug("Node.js") == "nodejs"
    assert slug("snake_case **bold**") == "snake_case-bold"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1", "a-2"}


def test_the_link_finder_sees_every_kind_of_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '[a](x.md) and ![b](img.png "title") and `[c](in-code.md)`\n'
        "```\n[d](in-a-block.md)\n```\n"
        "[e]: ref.md\n"
    )
    assert [target for _, target in _links(page)] == ["x.md", "img.png", "ref.md"]


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in _links(README)
        if not _is_external(target)
    }
    orphans = [path.name for path in DOCS.glob("*.md") if path.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link to: {orphans}"


def test_every_image_in_docs_is_shown_somewhere() -> None:
    shown = {
        (page.parent / target.partition("#")[0]).resolve()
        for page in pages()
        for _, target in _links(page)
        if not _is_external(target)
    }
    unused = [path.name for path in DOCS.glob("*.png") if path.resolve() not in shown]
    assert not unused, f"images in docs/ no page shows: {unused}"


@pytest.mark.parametrize("example", RUN_EXAMPLES, ids=str)
def test_every_example_the_tests_run_is_on_its_page(example: Example) -> None:
    assert example.blocks(), f"no {example.language} block under {example}"


@pytest.mark.parametrize("page", pages(), ids=_page_ids())
def test_python_blocks_parse_and_json_blocks_load(page: Path) -> None:
    text = page.read_text()
    for block in code_blocks(text, "python"):
        # Examples may await at the top level, as in an async test or a notebook.
        compile(block, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    for block in code_blocks(text, "json"):
        json.loads(block)


def _variables(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(_variables(annotation, f"{prefix}{name.upper()}__"))
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_configuration_page() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"`(JOBGATE_[A-Z0-9_]+)`", text))
    # `..._FIELD` in a row stands for the group of the row's first variable.
    for row in text.splitlines():
        first = re.search(r"`(JOBGATE_[A-Z0-9]+__)", row)
        if first:
            documented |= {first.group(1) + rest for rest in re.findall(r"`\.\.\._(\w+)`", row)}
    missing = [name for name in _variables(Settings, "JOBGATE_") if name not in documented]
    assert not missing, f"settings docs/configuration.md does not name: {missing}"


def _commands(app: typer.Typer, prefix: str) -> list[str]:
    names = [
        prefix + (command.name or command.callback.__name__.replace("_", "-"))
        for command in app.registered_commands
        if command.callback is not None and not command.hidden
    ]
    for group in app.registered_groups:
        assert group.typer_instance is not None and group.name is not None
        names.extend(_commands(group.typer_instance, f"{prefix}{group.name} "))
    return names


def test_every_command_is_in_the_operations_page() -> None:
    listed = set()
    for cell in re.findall(r"^\| `(jobgate [^`]*)`", (DOCS / "operations.md").read_text(), re.M):
        words = []
        for word in cell.split():  # the command's words, up to its first option or argument
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        listed.add(" ".join(words))
    missing = [name for name in _commands(cli_app, "jobgate ") if name not in listed]
    assert not missing, f"commands docs/operations.md's table does not list: {missing}"


def test_every_file_the_architecture_page_names_exists() -> None:
    """The "which file answers which question" table stays true as modules move."""
    text = (DOCS / "architecture.md").read_text()
    named = set(re.findall(r"`((?:cli|gateway|worker|shared|bench|tests)/[\w/.]*)`", text))
    assert named, "the page names no file"
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
