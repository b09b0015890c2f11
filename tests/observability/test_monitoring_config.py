"""deploy/prometheus and deploy/grafana: well-formed, and asking only for metrics that exist.

The last test runs real jobs through a real gateway and `jobgate worker`, scrapes both, and
checks every metric name the alert rules and the dashboard's queries use against what they
actually expose: a renamed metric breaks this test, not a dashboard at 3 a.m.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.settings import Settings
from tests.factories import auth, submit, wait_for_status
from tests.observability.conftest import MetricsWorker, parse_samples
from tests.polling import poll_job

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
LOCAL_PROMTOOL = DEPLOY.parent / ".tools" / "prometheus" / "usr" / "bin"
"""Where `make promtool` unpacks it (Debian's package, not installed)."""
DASHBOARD = DEPLOY / "grafana" / "jobgate-dashboard.json"

PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself, not scraped from anybody."""
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _dashboard_queries() -> list[str]:
    return [
        target["expr"]
        for panel in _dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, matchers, groupings stripped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", promql)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for found in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        is_call = text[found.end() :].lstrip().startswith("(")
        if not is_call and found.group().lower() not in PROMQL_WORDS:
            names.add(found.group())
    return names


def test_metric_names_are_parsed_out_of_promql() -> None:
    expr = (
        'sum by (job_type) (rate(jobgate_jobs_failed_total{queue="x"}[5m])) / on (job_type) '
        "histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket[5m]))) > 0.5 and up == 0"
    )
    assert metric_names(expr) == {"jobgate_jobs_failed_total", "a_seconds_bucket", "up"}


class TestAlertRules:
    def test_every_rule_is_complete(self) -> None:
        rules = _alert_rules()
        names = [rule["alert"] for rule in rules]
        assert len(names) == len(set(names)) >= 10
        for rule in rules:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert metric_names(rule["expr"]), rule["alert"]
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]

    def test_they_cover_failures_backlog_workers_and_stuck_jobs(self) -> None:
        used = {rule["alert"]: metric_names(rule["expr"]) for rule in _alert_rules()}
        every = set().union(*used.values())
        assert {
            "jobgate_jobs_failed_total",  # failure rate, dead letters
            "jobgate_queue_depth",  # backlog
            "jobgate_queue_oldest_job_age_seconds",  # stuck lines
            "jobgate_scheduled_jobs",  # delayed jobs nobody moves
            "jobgate_workers_alive",  # no workers
            "jobgate_jobs_in_flight",  # jobs stuck running
        } <= every

    def test_promtool_accepts_the_rules_and_their_unit_tests(self) -> None:
        promtool = shutil.which("promtool") or shutil.which("promtool", path=str(LOCAL_PROMTOOL))
        if promtool is None:
            pytest.skip("promtool not found (`make promtool` unpacks it into .tools/prometheus)")
        for command in (
            ["check", "rules", str(ALERTS)],
            ["check", "config", str(PROMETHEUS)],
            ["test", "rules", str(ALERT_TESTS)],
        ):
            done = subprocess.run(  # noqa: S603 (a fixed binary and our own files)
                [promtool, *command], capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_the_gateway_and_every_worker() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["jobgate-gateway"]["static_configs"][0]["targets"] == ["gateway:8000"]
    (workers,) = jobs["jobgate-worker"]["dns_sd_configs"]
    assert workers["port"] == Settings.model_fields["worker_metrics_port"].default == 9464


class TestDashboard:
    def test_panels_are_laid_out_and_bound_to_the_datasource_input(self) -> None:
        dashboard = _dashboard()
        (source,) = dashboard["__inputs"]
        assert (source["name"], source["pluginId"]) == ("DS_PROMETHEUS", "prometheus")
        panels = dashboard["panels"]
        assert len({panel["id"] for panel in panels}) == len(panels)
        for panel in panels:
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
                assert panel["targets"], panel["title"]

    def test_it_shows_what_operators_look_at(self) -> None:
        titles = " ".join(panel["title"].lower() for panel in _dashboard()["panels"])
        for topic in ("throughput", "failure rate", "queue depth", "run time", "queue wait"):
            assert topic in titles
        for topic in ("workers alive", "in flight", "latency"):
            assert topic in titles
        queries = " ".join(_dashboard_queries())
        assert "histogram_quantile(0.5," in queries and "histogram_quantile(0.95," in queries


async def test_every_metric_used_is_exposed_after_real_jobs(
    client: httpx.AsyncClient, token: str, metrics_worker: Callable[[], MetricsWorker]
) -> None:
    worker = metrics_worker()
    succeeded = await submit(client, token, "echo", {"message": "x"})
    retried = await submit(client, token, "flaky", {"fail_times": 1})
    failed = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
    # Its retry (after about a second) would start past its deadline: it expires instead.
    expired = await submit(client, token, "flaky", {"fail_times": 1}, {"start_within_seconds": 0.5})
    waiting = await submit(client, token, "echo", {"message": "later"}, {"delay_seconds": 600})
    running = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
    await wait_for_status(client, token, succeeded["id"], "succeeded", timeout=20)
    await wait_for_status(client, token, failed["id"], "failed")
    await wait_for_status(client, token, expired["id"], "expired")
    await poll_job(client, token, retried["id"], lambda job: job["attempts"] >= 1)
    await poll_job(client, token, running["id"], lambda job: job["status"] == "running")
    for job in (waiting, running):
        assert (await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))).is_success
    await wait_for_status(client, token, running["id"], "cancelled")
    await wait_for_status(client, token, retried["id"], "succeeded")

    gateway = (await client.get("/metrics")).text
    exposed = set(parse_samples(gateway)) | set(parse_samples(await worker.scrape()))
    used = set().union(
        *(metric_names(rule["expr"]) for rule in _alert_rules()),
        *(metric_names(query) for query in _dashboard_queries()),
    )
    assert used - PROMETHEUS_OWN - exposed == set()
