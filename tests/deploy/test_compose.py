"""`compose.yaml`, checked statically: the Compose Specification's JSON schema, then our promises.

No Docker engine is needed: the schema is vendored beside this file (`compose_spec/`, Apache-2.0,
see its README) and `jsonschema` validates the parsed file against it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
APP_SERVICES = ("gateway", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    # It declares draft-07 as `https://json-schema.org/draft-07/schema` (no `#`), a spelling
    # jsonschema does not look up: name the draft here.
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def seconds(duration: str) -> float:
    """A Compose duration (`40s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_valid_against_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_refuses_what_compose_would(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(compose)
    services(broken)["worker"]["depends_on"]["migrate"]["condition"] = "service_finished"
    services(broken)["gateway"]["restart_policy"] = "always"
    messages = [error.message for error in validator.iter_errors(broken)]
    assert len(messages) == 2, messages


def test_workers_scale_out(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    # `docker compose up --scale worker=N` needs N distinct names and no fixed host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker
    stop_grace = seconds(worker["stop_grace_period"])
    assert stop_grace > Settings.model_fields["worker_shutdown_grace_seconds"].default


def test_migrate_runs_once_before_gateway_and_workers(compose: dict[str, Any]) -> None:
    migrate = services(compose)["migrate"]
    assert migrate["command"] == ["jobgate", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        depends_on = services(compose)[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"


def test_servers_have_healthchecks_and_apps_build_images_that_do(compose: dict[str, Any]) -> None:
    for name in ("postgres", "redis"):
        assert services(compose)[name]["healthcheck"]["test"][0] == "CMD"
    for name in ("migrate", *APP_SERVICES):
        dockerfile = services(compose)[name]["build"]["dockerfile"]
        # The images carry the HEALTHCHECK (tests/deploy/test_dockerfiles.py checks it).
        assert "\nHEALTHCHECK " in (REPO / dockerfile).read_text()


def test_redis_persists_its_queues(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume_names = set(compose["volumes"])
    assert any(
        mount.split(":")[0] in volume_names and mount.endswith(":/data")
        for mount in redis["volumes"]
    )


def test_prometheus_is_optional(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert prometheus["volumes"] == ["./deploy/prometheus:/etc/prometheus:ro"]
    # The image reads /etc/prometheus/prometheus.yml; its rule files resolve beside it.
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config.get("rule_files", []):
        assert (REPO / "deploy" / "prometheus" / rule_file).is_file(), rule_file
    worker_jobs = [job for job in config["scrape_configs"] if "dns_sd_configs" in job]
    assert worker_jobs, "scaled workers are found by DNS, not one static target"
    assert all(
        "profiles" not in service
        for name, service in services(compose).items()
        if name != "prometheus"
    )


def test_every_jobgate_variable_is_a_setting(compose: dict[str, Any]) -> None:
    for name in ("migrate", *APP_SERVICES):
        variables = services(compose)[name]["environment"]
        assert {"JOBGATE_DATABASE_URL", "JOBGATE_REDIS_URL"} <= set(variables)
        for variable in variables:
            field = variable.removeprefix("JOBGATE_").lower()
            assert field in Settings.model_fields, variable
