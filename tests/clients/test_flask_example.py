"""`examples/flask/app.py`, driven by Flask's test client, talking to a live gateway and worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from jobgate_client import JobgateClient

from examples.flask.app import create_app
from tests.live_gateway import LiveGateway


@pytest.fixture
def app_client(
    live_gateway: LiveGateway, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FlaskClient]:
    """The example app configured as docs/clients.md says: JOBGATE_URL and JOBGATE_API_KEY."""
    monkeypatch.setenv("JOBGATE_URL", live_gateway.url)
    monkeypatch.setenv("JOBGATE_API_KEY", api_key)
    app = create_app()
    yield app.test_client()
    app.extensions["jobgate"].close()


def test_signup_submits_a_job_whose_result_the_status_page_shows(app_client: FlaskClient) -> None:
    answer = app_client.post("/signup", json={"email": "ada@example.com"})
    assert answer.status_code == 202, answer.text
    body = answer.get_json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/status/{body['job_id']}"

    status = app_client.get(body["status_url"], query_string={"wait": 10})

    assert status.status_code == 200
    assert status.get_json() == {
        "job_id": body["job_id"],
        "status": "succeeded",
        "result": {"message": "Welcome, ada@example.com!"},
        "error": None,
    }


def test_the_same_signup_twice_is_one_job(app_client: FlaskClient) -> None:
    first = app_client.post("/signup", json={"email": "ada@example.com"}).get_json()
    second = app_client.post("/signup", json={"email": "ada@example.com"}).get_json()
    other = app_client.post("/signup", json={"email": "bob@example.com"}).get_json()
    assert first["job_id"] == second["job_id"] != other["job_id"]


def test_input_jobgate_refuses_comes_back_as_its_problem(app_client: FlaskClient) -> None:
    # echo takes at most 10 000 characters: jobgate, not the app, says no.
    answer = app_client.post("/signup", json={"email": "a" * 10_000 + "@example.com"})
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["instance"] == "/signup"
    assert [issue["loc"] for issue in problem["errors"]] == [["body", "args", "message"]]


def test_unknown_job_is_404(app_client: FlaskClient) -> None:
    answer = app_client.get(f"/status/{uuid.uuid4()}")
    assert answer.status_code == 404
    assert answer.get_json()["type"] == "/problems/job-not-found"


def test_missing_email_is_refused_by_the_app(app_client: FlaskClient) -> None:
    answer = app_client.post("/signup", json={"name": "ada"})
    assert answer.status_code == 400


def test_jobgate_refusing_the_apps_key_is_a_502(live_gateway: LiveGateway) -> None:
    with JobgateClient(live_gateway.url, "revoked-or-mistyped") as jobgate:
        answer = create_app(jobgate).test_client().post("/signup", json={"email": "a@b.c"})
    assert answer.status_code == 502
    assert answer.get_json()["title"] == "Bad Gateway"
