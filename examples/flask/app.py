"""A Flask app that hands its slow work to jobgate, through `jobgate-client` only.

    pip install flask ./clients/python
    JOBGATE_URL=http://127.0.0.1:8000 JOBGATE_API_KEY=... flask --app examples/flask/app.py run

`POST /signup {"email": "ada@example.com"}` submits the welcome message as a job and answers
`202` with the job's id at once; `GET /status/<id>` shows the job's status and result
(`?wait=5` holds the request up to 5 s for it to finish). The job here is the built-in `echo`;
a real app would use `send_email` (`{"to": ..., "subject": ..., "body": ...}`) the same way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict
from typing import Any

from flask import Flask, Response, jsonify, request, url_for
from jobgate_client import JobgateClient, JobgateError

PASSED_ON = frozenset({404, 422, 429, 503})
"""jobgate's answers our caller can act on (unknown job, bad input, slow down, try later);
any other error is ours or jobgate's, and our caller sees 502."""


def create_app(jobgate: JobgateClient | None = None) -> Flask:
    """The app; `jobgate` defaults to a client configured by JOBGATE_URL and JOBGATE_API_KEY."""
    app = Flask(__name__)
    client = jobgate or JobgateClient()
    app.extensions["jobgate"] = client

    @app.post("/signup")
    def signup() -> tuple[dict[str, Any], int]:
        body = request.get_json(silent=True)
        email = body.get("email") if isinstance(body, dict) else None
        if not isinstance(email, str) or "@" not in email:
            return {"error": 'send {"email": "..."}'}, 400
        job = client.submit(
            "echo",
            {"message": f"Welcome, {email}!"},
            labels={"source": "signup"},
            # The same signup sent twice (a double click, a retry) is one job, not two welcomes.
            idempotency_key=f"signup:{hashlib.sha256(email.encode()).hexdigest()}",
        )
        status_url = url_for("status", job_id=job.id)
        return {"job_id": job.id, "status": job.status, "status_url": status_url}, 202

    @app.get("/status/<job_id>")
    def status(job_id: str) -> dict[str, Any]:
        job = client.get(job_id, wait=request.args.get("wait", 0.0, type=float) or 0.0)
        return {
            "job_id": job.id,
            "status": job.status,
            "result": job.result,
            "error": None if job.error is None else asdict(job.error),
        }

    @app.errorhandler(JobgateError)
    def jobgate_refused(error: JobgateError) -> Response:
        return _problem(error)

    return app


def _problem(error: JobgateError) -> Response:
    """jobgate's problem document, passed on (RFC 9457), or a 502 saying jobgate failed us."""
    status = error.status if error.status in PASSED_ON else 502
    body: dict[str, Any] = {
        "type": error.type if status == error.status else "about:blank",
        "title": error.title if status == error.status else "Bad Gateway",
        "status": status,
        "detail": error.detail if status == error.status else "The job service failed.",
        "instance": request.path,
    }
    if error.errors:
        body["errors"] = [asdict(issue) for issue in error.errors]
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(math.ceil(error.retry_after))
    return response
