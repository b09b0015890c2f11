"""The committed OpenAPI document is exactly what the code generates."""

from __future__ import annotations

import json

from gateway.openapi import OPENAPI_PATH, render_openapi


def test_committed_openapi_matches_the_code() -> None:
    committed = OPENAPI_PATH.read_text()
    assert committed == render_openapi(), "openapi/openapi.json is stale: run `jobgate openapi`"


def test_every_job_type_has_its_own_typed_submit_operation() -> None:
    document = json.loads(render_openapi())
    for name in ("echo", "sleep", "flaky", "health_check", "send_email", "tenant_report"):
        operation = document["paths"][f"/jobs/{name}"]["post"]
        assert operation["operationId"] == f"submit_{name}"
        body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
        assert body["properties"]["args"]["$ref"].endswith("Args")
