# Two commands on a fresh machine (Python 3.11+ and make are all it needs):
#   make dev    gateway + worker on embedded PostgreSQL and Redis (or JOBGATE_*_URL)
#   make test   lint, type checks and the test suite
UV := .tools/bin/uv
PYTEST_ARGS ?= -n 2

.PHONY: dev test lint sync openapi

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

sync: $(UV)
	$(UV) sync --frozen --quiet

dev: sync
	$(UV) run --frozen jobgate dev $(DEV_ARGS)

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

test: lint
	$(UV) run --frozen pytest $(PYTEST_ARGS)

openapi: sync
	$(UV) run --frozen jobgate openapi
