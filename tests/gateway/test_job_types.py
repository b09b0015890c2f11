"""`GET /job-types`: the catalogue callers generate clients and forms from."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema

from tests.conftest import ClientFactory
from tests.rate_limited_jobs import RATE_LIMITED_TYPES
from worker.testing import declared

BUILT_IN = {"echo", "sleep", "flaky", "health_check"}


async def _catalogue(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/job-types")
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()}


class TestListJobTypes:
    async def test_lists_the_built_in_types(self, client: httpx.AsyncClient) -> None:
        catalogue = await _catalogue(client)
        assert set(catalogue) >= BUILT_IN
        for entry in catalogue.values():
            assert set(entry) == {
                "name",
                "description",
                "queue",
                "queues",
                "defaults",
                "concurrency",
                "args_schema",
                "result_schema",
                "examples",
                "rate_limit",
            }
            assert entry["description"]
            assert entry["queues"][0] == entry["queue"]
            assert entry["args_schema"]["type"] == "object"
            assert entry["result_schema"]["type"] == "object"

    async def test_echo_entry(self, client: httpx.AsyncClient) -> None:
        echo = (await _catalogue(client))["echo"]
        assert (echo["queue"], echo["queues"]) == ("default", ["default"])
        assert echo["defaults"]["max_tries"] == 3
        assert echo["defaults"]["timeout_seconds"] == 30.0
        assert echo["defaults"]["priority"] == "default"
        args = echo["args_schema"]
        assert args["required"] == ["message"]
        assert args["additionalProperties"] is False
        assert args["properties"]["message"]["maxLength"] == 10_000
        assert args["properties"]["repeat"]["default"] == 1
        repeat = args["properties"]["repeat"]
        assert (repeat["minimum"], repeat["maximum"]) == (1, 100)
        assert echo["result_schema"]["required"] == ["message"]

    async def test_defaults_differ_per_type(self, client: httpx.AsyncClient) -> None:
        catalogue = await _catalogue(client)
        assert catalogue["send_email"]["queues"] == ["email"]
        assert catalogue["tenant_report"]["queues"] == ["data_processing"]
        assert catalogue["sleep"]["defaults"]["max_tries"] == 1
        assert catalogue["sleep"]["defaults"]["timeout_seconds"] == 3700.0
        assert catalogue["flaky"]["defaults"]["backoff_base_seconds"] == 1.0
        assert catalogue["health_check"]["args_schema"].get("properties", {}) == {}
        assert set(catalogue["flaky"]["args_schema"]["properties"]) == {"fail_times", "permanent"}
        assert catalogue["health_check"]["result_schema"]["required"] == ["status", "worker"]

    async def test_every_field_is_described(self, client: httpx.AsyncClient) -> None:
        for entry in (await _catalogue(client)).values():
            for schema in (entry["args_schema"], entry["result_schema"]):
                for name, field in schema.get("properties", {}).items():
                    assert field.get("description"), (entry["name"], name)

    async def test_needs_no_key(self, client: httpx.AsyncClient) -> None:
        """The catalogue is public documentation, like the OpenAPI document."""
        assert (await client.get("/job-types")).status_code == 200

    async def test_every_type_shows_examples_its_args_schema_accepts(
        self, client: httpx.AsyncClient
    ) -> None:
        catalogue = await _catalogue(client)
        for entry in catalogue.values():
            for example in entry["examples"]:
                jsonschema.validate(example, entry["args_schema"])
        assert all(catalogue[name]["examples"] for name in BUILT_IN)
        assert catalogue["echo"]["examples"] == [{"message": "hello", "repeat": 2}]

    async def test_shows_each_types_rate_limit(self, make_client: ClientFactory) -> None:
        with declared(*RATE_LIMITED_TYPES):
            catalogue = await _catalogue(await make_client())
        assert catalogue["echo"]["rate_limit"] is None
        assert catalogue["stamp_rate_limited"]["rate_limit"] == {
            "count": 10,
            "per_seconds": 1.0,
            "burst": 2,
            "key": None,
        }
        assert catalogue["stamp_per_customer"]["rate_limit"] == {
            "count": 1,
            "per_seconds": 2.0,
            "burst": 0,
            "key": "customer_id",
        }
