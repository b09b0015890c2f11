"""The Node.js client and example, installed and built once for every test that runs them.

`npm ci` runs only when `package-lock.json` (or Node's version) changed since the last
install, and `tsc` only when the client's sources did; a file lock keeps two xdist workers
from installing or building at the same time. Tests skip only where `node`/`npm` are missing.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO_ROOT / "clients" / "typescript"
EXAMPLE_DIR = REPO_ROOT / "examples" / "node"
NPM_TIMEOUT_SECONDS = 180
_INSTALLED_STAMP = "node_modules/.jobgate-installed"
_BUILT_STAMP = "dist/.jobgate-built"


def require_node() -> None:
    """Skip the calling test where Node.js or npm is not installed."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: the Node.js client is not tested")


def run(
    argv: list[str], cwd: Path, *, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a Node.js tool, failing with its output if it fails."""
    done = subprocess.run(  # noqa: S603 (fixed tools, arguments as a list)
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256(subprocess.check_output(["node", "--version"]))  # noqa: S607
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextmanager
def _exclusive() -> Iterator[None]:
    lock_name = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"jobgate-node-{lock_name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _npm_ci(package_dir: Path) -> None:
    """`npm ci` unless node_modules already holds exactly the locked packages."""
    stamp = package_dir / _INSTALLED_STAMP
    wanted = _digest(package_dir / "package-lock.json")
    if stamp.exists() and stamp.read_text() == wanted:
        return
    # Scripts stay off: the client is built below, explicitly, and only when it changed.
    npm_ci = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    run(npm_ci, package_dir, timeout=NPM_TIMEOUT_SECONDS)
    stamp.write_text(wanted)


def _build_client() -> None:
    stamp = CLIENT_DIR / _BUILT_STAMP
    sources = sorted((CLIENT_DIR / "src").glob("*.ts"))
    wanted = _digest(*sources, CLIENT_DIR / "tsconfig.json", CLIENT_DIR / "package-lock.json")
    if stamp.exists() and stamp.read_text() == wanted:
        return
    run(["npm", "run", "build"], CLIENT_DIR)
    stamp.write_text(wanted)


def install_client() -> None:
    """The client's packages (openapi-typescript, tsc, openapi-fetch), installed."""
    require_node()
    with _exclusive():
        _npm_ci(CLIENT_DIR)


def install_example() -> None:
    """The client built into `dist/` and the example installed, ready for `node main.mjs`."""
    require_node()
    with _exclusive():
        _npm_ci(CLIENT_DIR)
        _build_client()
        _npm_ci(EXAMPLE_DIR)


def install_as_a_user(root: Path) -> Path:
    """The client and example copied under `root` as a fresh clone has them (no node_modules,
    no dist/), then docs/clients.md's one step: `npm ci` in the example, scripts on. Returns the
    example's directory, ready for `node main.mjs`.

    `install_example` builds the client explicitly, so it cannot see this path break (say, the
    client's `prepare` script failing with `tsc: not found` in a user's install).
    """
    require_node()
    for source in (CLIENT_DIR, EXAMPLE_DIR):
        shutil.copytree(
            source,
            root / source.relative_to(REPO_ROOT),
            ignore=shutil.ignore_patterns("node_modules", "dist"),
        )
    example = root / EXAMPLE_DIR.relative_to(REPO_ROOT)
    run(["npm", "ci", "--no-audit", "--no-fund"], example, timeout=NPM_TIMEOUT_SECONDS)
    return example
