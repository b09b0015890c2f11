"""The committed OpenAPI document: exactly what the code generates, valid, fully documented."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from openapi_spec_validator import validate

from gateway.openapi import OPENAPI_PATH, render_openapi
from gateway.problems import PROBLEM_JSON
from shared.contracts import REGISTRY

BUILT_IN = ("echo", "sleep", "flaky", "health_check", "send_email", "tenant_report")

# The operations callers' generated clients are named after: renaming one breaks them.
STABLE_OPERATION_IDS = {
    "list_jobs",
    "get_job",
    "stream_job_events",
    "cancel_job",
    "retry_job",
    "list_job_types",
    "list_schedules",
    "healthz",
    "readyz",
    "create_tenant",
    "create_api_key",
    "revoke_api_key",
    "rotate_webhook_secret",
    "set_tenant_limits",
    *(f"submit_{name}{suffix}" for name in BUILT_IN for suffix in ("", "_batch")),
}
INPUT_FREE_OPERATION_IDS = {"healthz", "readyz", "list_job_types", "list_schedules"}
"""Public probes and catalogues: no key, no parameters, no body, hence no 4xx of their own."""


def test_committed_openapi_matches_the_code() -> None:
    committed = OPENAPI_PATH.read_text()
    assert committed == render_openapi(), (
        "openapi/openapi.json is stale: run `make openapi` (it regenerates the TypeScript"
        " client's types too)"
    )


def test_every_job_type_has_its_own_typed_submit_operation() -> None:
    document = json.loads(render_openapi())
    for name in BUILT_IN:
        operation = document["paths"][f"/jobs/{name}"]["post"]
        assert operation["operationId"] == f"submit_{name}"
        body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
        assert body["properties"]["args"]["$ref"].endswith("Args")


def test_each_job_types_options_name_its_queues_as_an_enum() -> None:
    """Generated clients type `options.queue` per job type (`JobType.queues`)."""
    schemas = json.loads(render_openapi())["components"]["schemas"]
    for name in BUILT_IN:
        camel = "".join(part.capitalize() for part in name.split("_"))
        options_ref = schemas[f"{camel}Submission"]["properties"]["options"]["$ref"]
        assert options_ref == f"#/components/schemas/{camel}Options"
        queue = schemas[f"{camel}Options"]["properties"]["queue"]
        assert queue["anyOf"] == [
            {"type": "string", "enum": list(REGISTRY.get(name).queues)},
            {"type": "null"},
        ]


def _committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    return document


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            yield f"{method.upper()} {path}", operation


def _is_problem(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get(PROBLEM_JSON, {}).get("schema", {})
    return bool(schema.get("$ref") == "#/components/schemas/Problem")


def test_the_committed_document_is_valid_openapi() -> None:
    validate(_committed())


def test_every_operation_is_named_summarised_tagged_and_declares_its_problems() -> None:
    document = _committed()
    declared_tags = {tag["name"] for tag in document["tags"]}
    seen_ids: set[str] = set()
    for where, operation in _operations(document):
        operation_id = operation.get("operationId", "")
        assert re.fullmatch(r"[a-z][a-z0-9_]*", operation_id), where
        assert operation_id not in seen_ids, f"{where}: operationId {operation_id} twice"
        seen_ids.add(operation_id)
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        assert set(operation["tags"]) <= declared_tags, f"{where}: tag not in app.OPENAPI_TAGS"
        responses = operation["responses"].items()
        errors = {int(code): body for code, body in responses if code[0] in "45"}
        assert errors, f"{where} declares no error response"
        assert all(_is_problem(body) for body in errors.values()), f"{where}: not problem+json"
        assert 500 in errors, where
        # An operation that reads nothing from the caller (a probe, a catalogue) can only fail
        # on the server's side; every other one can be the caller's fault.
        if any(key in operation for key in ("parameters", "requestBody", "security")):
            assert any(400 <= code < 500 for code in errors), f"{where} declares no 4xx"
        else:
            assert operation_id in INPUT_FREE_OPERATION_IDS, f"{where} takes no input?"


def test_operation_ids_stay_stable() -> None:
    ids = {operation["operationId"] for _, operation in _operations(_committed())}
    assert ids >= STABLE_OPERATION_IDS, f"renamed or removed: {STABLE_OPERATION_IDS - ids}"


def test_security_schemes_are_declared_and_required_where_needed() -> None:
    document = _committed()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == schemes["ApiKey"] | {"type": "http", "scheme": "bearer"}
    assert schemes["AdminToken"] == schemes["AdminToken"] | {"type": "http", "scheme": "bearer"}
    expected: list[dict[str, list[str]]] | None
    for where, operation in _operations(document):
        if operation["operationId"] in INPUT_FREE_OPERATION_IDS:
            expected = None  # public documentation and probes, like this document itself
        elif where.split(" ", 1)[1].startswith("/admin/"):
            expected = [{"AdminToken": []}]
        else:
            expected = [{"ApiKey": []}]
        assert operation.get("security") == expected, where


def test_every_submit_operation_shows_examples_its_body_schema_accepts() -> None:
    """Declare `examples=` on the job type (`shared/contracts.py`): each becomes a body here."""
    document = _committed()
    submits = [
        (where, operation)
        for where, operation in _operations(document)
        if where.startswith("POST /jobs/") and operation["operationId"].startswith("submit_")
    ]
    assert len(submits) >= 2 * len(BUILT_IN)
    for where, operation in submits:
        body = operation["requestBody"]["content"]["application/json"]
        assert body.get("examples"), f"{where}: its job type declares no `examples`"
        # `$ref`s point at `#/components/...`: give the validator the document's components.
        schema = {"$ref": body["schema"]["$ref"], "components": document["components"]}
        for example in body["examples"].values():
            jsonschema.validate(example["value"], schema)
