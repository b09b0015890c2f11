"""Planning a workflow from its steps' jobs: what is released, and what the workflow's state is."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from shared.workflows.plan import StepRun, plan_workflow
from shared.workflows.spec import WorkflowNode

NODE = TypeAdapter[WorkflowNode](WorkflowNode)


def _step(message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "step", "job": "echo", "args": {"message": message}, **extra}


def _done(message: str) -> StepRun:
    return StepRun(status="succeeded", result={"message": message})


NESTED = NODE.validate_python(
    {
        "type": "chain",
        "steps": [
            {
                "type": "group",
                "steps": [{"type": "chain", "steps": [_step("a"), _step("b")]}, _step("c")],
            },
            {"type": "step", "job": "echo", "args_from": {"message": "*.message"}},
        ],
    }
)


def test_nested_nodes_release_each_step_when_its_input_is_ready() -> None:
    plan = plan_workflow(NESTED, {})
    assert [release.pointer for release in plan.releases] == [
        "/steps/0/steps/0/steps/0",
        "/steps/0/steps/1",
    ]
    assert plan.state.kind == "running"

    plan = plan_workflow(
        NESTED, {"/steps/0/steps/0/steps/0": _done("a"), "/steps/0/steps/1": _done("c")}
    )
    assert [release.pointer for release in plan.releases] == ["/steps/0/steps/0/steps/1"]
    assert plan.releases[0].value == {"message": "a"}  # a chain passes its previous output on
    assert plan.step_states["/steps/1"] == "waiting"

    runs = {
        "/steps/0/steps/0/steps/0": _done("a"),
        "/steps/0/steps/0/steps/1": _done("b"),
        "/steps/0/steps/1": _done("c"),
    }
    plan = plan_workflow(NESTED, runs)
    (last,) = plan.releases
    assert (last.pointer, last.value) == ("/steps/1", [{"message": "b"}, {"message": "c"}])

    plan = plan_workflow(NESTED, {**runs, "/steps/1": _done("bc")})
    assert (plan.state.kind, plan.state.value, plan.releases) == ("done", {"message": "bc"}, [])


def test_a_failure_is_failing_while_a_sibling_runs_and_skips_what_follows() -> None:
    failure = StepRun(status="failed", error={"type": "permanent", "message": "no"})
    plan = plan_workflow(
        NESTED, {"/steps/0/steps/0/steps/0": failure, "/steps/0/steps/1": StepRun("running")}
    )
    assert plan.state.kind == "failing"
    assert plan.state.error == {"type": "permanent", "message": "no"}
    assert plan.releases == []
    assert plan.step_states["/steps/0/steps/0/steps/1"] == "skipped"
    assert plan.step_states["/steps/1"] == "skipped"

    plan = plan_workflow(
        NESTED, {"/steps/0/steps/0/steps/0": failure, "/steps/0/steps/1": _done("c")}
    )
    assert plan.state.kind == "failed"


def test_a_chord_with_failures_calls_back_once_every_member_finished() -> None:
    chord = NODE.validate_python(
        {
            "type": "chord",
            "include_failures": True,
            "group": [_step("a"), _step("b")],
            "callback": {"type": "step", "job": "echo", "args": {"message": "cb"}},
        }
    )
    failure = StepRun(status="cancelled")
    assert (
        plan_workflow(chord, {"/group/0": failure, "/group/1": StepRun("running")}).releases == []
    )

    plan = plan_workflow(chord, {"/group/0": failure, "/group/1": _done("b")})
    (callback,) = plan.releases
    assert callback.pointer == "/callback"
    assert callback.value == [
        {"status": "failed", "result": None, "error": {"type": "cancelled", "message": ""}},
        {"status": "succeeded", "result": {"message": "b"}, "error": None},
    ]
    assert plan.state.kind == "running"
