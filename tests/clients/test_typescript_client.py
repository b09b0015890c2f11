"""The TypeScript client's types: generated from the committed OpenAPI document, and enforced."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.clients.node_packages import CLIENT_DIR, install_client, run
from tests.docs_examples import NODE_CLIENT

SCHEMA_TYPES = CLIENT_DIR / "src" / "schema.d.ts"
# Whichever test comes first installs the npm packages (a fresh machine downloads them).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _generate_command() -> list[str]:
    """`npm run generate` as the package declares it (so the test and the script agree)."""
    scripts = json.loads((CLIENT_DIR / "package.json").read_text())["scripts"]
    argv: list[str] = scripts["generate"].split()
    assert argv[0] == "openapi-typescript" and argv[-2] == "--output", argv
    return ["npx", "--no-install", *argv[:-1]]


def test_committed_types_match_the_committed_openapi_document(tmp_path: Path) -> None:
    install_client()
    regenerated = tmp_path / "schema.d.ts"
    run([*_generate_command(), str(regenerated)], CLIENT_DIR)
    assert regenerated.read_text() == SCHEMA_TYPES.read_text(), (
        "clients/typescript/src/schema.d.ts is stale: run `make openapi`"
        " (or `npm --prefix clients/typescript run generate`)"
    )


def _docs_example(directory: Path) -> str:
    """docs/clients.md's Node.js `ts` block, importing the client's sources, not the package."""
    (example,) = NODE_CLIENT.blocks()
    source = os.path.relpath(CLIENT_DIR / "src" / "index.js", directory)
    return str(example).replace('"@jobgate/client"', json.dumps(source))


def test_the_client_types_accept_valid_calls_and_refuse_wrong_ones(tmp_path: Path) -> None:
    """`test/types.ts` marks every call that must not compile with `@ts-expect-error`; the
    docs' example must compile as written."""
    install_client()
    example = tmp_path / "docs_example.mts"
    example.write_text(_docs_example(tmp_path))
    config = {
        "extends": str(CLIENT_DIR / "tsconfig.test.json"),
        "compilerOptions": {
            "rootDir": "/",
            "typeRoots": [str(CLIENT_DIR / "node_modules" / "@types")],
        },
        "include": [str(CLIENT_DIR / "src"), str(CLIENT_DIR / "test"), str(example)],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    run(["npx", "--no-install", "tsc", "-p", str(tmp_path / "tsconfig.json")], CLIENT_DIR)
