# Two commands on a fresh machine (Python 3.11+ and make are all it needs):
#   make dev    gateway + worker on embedded PostgreSQL and Redis (or JOBGATE_*_URL)
#   make test   lint, type checks and the test suite
# (`make test-fast`: the same without the chaos, slow and bench tests, for the edit-test loop)
UV := .tools/bin/uv
PYTEST_ARGS ?= -n 2

.PHONY: dev test test-fast lint sync openapi browser promtool

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

# Bytecode compiled once, here: Python only caches it on first import where it may write it,
# and CI images and containers often set PYTHONDONTWRITEBYTECODE, so every process (each
# `jobgate worker` a test spawns) would compile SQLAlchemy, pydantic & co. afresh, ~6 s of CPU.
sync: $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode

dev: sync
	$(UV) run --frozen jobgate dev $(DEV_ARGS)

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

test: lint browser promtool
	$(UV) run --frozen pytest $(PYTEST_ARGS)

# Everything but the tests marked chaos, slow or bench (pyproject.toml), which `make test` runs.
test-fast: lint
	$(UV) run --frozen pytest -n 2 -m "not chaos and not slow and not bench"

# Debian's Chromium for the dashboard's browser tests (tests/ui), installed once (~30 s) when
# running as root; otherwise, or if apt cannot reach its mirror, those tests skip and say why.
CHROMIUM := /usr/bin/chromium
browser:
	@[ -x $(CHROMIUM) ] || [ "$$(id -u)" != 0 ] || { apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		>/dev/null; } || echo "could not install chromium: the browser tests will skip"

# Prometheus's promtool, to check the shipped alert rules and their unit tests: unpacked from
# Debian's package into .tools/prometheus (nothing installed, no service started); where apt
# cannot fetch it, that one test skips and says why.
PROMTOOL := .tools/prometheus/usr/bin/promtool
promtool: $(UV)
	@[ -x $(PROMTOOL) ] || command -v promtool >/dev/null || { cd .tools \
		&& apt-get download -qq prometheus 2>/dev/null \
		&& dpkg -x prometheus_*.deb prometheus && rm -f prometheus_*.deb; } \
		|| echo "could not fetch promtool: the alert-rule check will skip"

# The document, then the TypeScript client's types generated from it (Node.js and npm).
openapi: sync
	$(UV) run --frozen jobgate openapi
	cd clients/typescript && { [ -d node_modules ] || npm ci --ignore-scripts --no-audit --no-fund; } \
		&& npm run --silent generate
