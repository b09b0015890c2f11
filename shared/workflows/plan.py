"""Where a workflow stands, computed from its definition and its steps' jobs (no I/O here).

`plan_workflow` walks the tree once. Each step is `done` (its job succeeded), `failed` (its
job failed, was cancelled or expired), `running` (its job exists and has not finished),
`waiting` (its input is not ready yet) or `dead` (its input can never come: something before
it failed).
Steps whose input is ready and that have no job yet are *releases*: the caller creates their
jobs. Inner nodes combine their children's states; `failing` is a failure while some sibling
still runs. The same pure function serves the worker (advance), the reconciler (re-drive),
retries and `GET /workflows/{id}`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.status import UNSUCCESSFUL
from shared.workflows.spec import (
    ChainNode,
    ChordNode,
    GroupNode,
    StepNode,
    WorkflowNode,
    children,
)

Kind = Literal["done", "failed", "failing", "running", "waiting", "dead"]
_ACTIVE = frozenset({"running", "failing"})
_FAILED = frozenset({"failed", "failing"})


@dataclass(frozen=True)
class StepRun:
    """The current job of a step, as far as planning needs it."""

    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class NodeState:
    kind: Kind
    value: Any = None
    """The node's output, once `done`."""
    error: dict[str, Any] | None = None
    """The first failure's error, once `failed`/`failing`."""


@dataclass(frozen=True)
class _Ready:
    value: Any


_BLOCKED: Literal["blocked"] = "blocked"
_DEAD: Literal["dead"] = "dead"
Input = _Ready | Literal["blocked", "dead"]


@dataclass(frozen=True)
class Release:
    """A step whose input is ready and which has no job yet; `value` is that input."""

    pointer: str
    step: StepNode
    value: Any


@dataclass
class Plan:
    state: NodeState
    releases: list[Release] = field(default_factory=list)
    step_states: dict[str, str] = field(default_factory=dict)
    """Per step pointer: its job's status, or `waiting` / `skipped` (never runs) without one."""


def plan_workflow(root: WorkflowNode, runs: dict[str, StepRun]) -> Plan:
    """Where the workflow stands given the current job of each released step."""
    plan = Plan(state=NodeState("waiting"))
    plan.state = _Walk(runs, plan).node(root, "", _Ready(None))
    return plan


@dataclass
class _Walk:
    runs: dict[str, StepRun]
    plan: Plan

    def node(self, node: WorkflowNode, pointer: str, given: Input) -> NodeState:
        if isinstance(node, StepNode):
            return self.step(node, pointer, given)
        if isinstance(node, ChainNode):
            states, current = [], given
            for child_pointer, child in children(node, pointer):
                state = self.node(child, child_pointer, current)
                states.append(state)
                current = _as_input(state)
            return _combine(states, states[-1].value)
        if isinstance(node, GroupNode):
            states = [self.node(child, p, given) for p, child in children(node, pointer)]
            return _combine(states, [state.value for state in states])
        return self.chord(node, pointer, given)

    def step(self, step: StepNode, pointer: str, given: Input) -> NodeState:
        run = self.runs.get(pointer)
        if run is not None:
            self.plan.step_states[pointer] = run.status
            if run.status == "succeeded":
                return NodeState("done", value=run.result)
            if run.status in UNSUCCESSFUL:
                return NodeState("failed", error=run.error or {"type": run.status, "message": ""})
            return NodeState("running")
        if isinstance(given, _Ready):
            self.plan.releases.append(Release(pointer, step, given.value))
            self.plan.step_states[pointer] = "waiting"
            return NodeState("running")
        self.plan.step_states[pointer] = "skipped" if given == _DEAD else "waiting"
        return NodeState("dead" if given == _DEAD else "waiting")

    def chord(self, chord: ChordNode, pointer: str, given: Input) -> NodeState:
        members = [
            self.node(child, f"{pointer}/group/{index}", given)
            for index, child in enumerate(chord.group)
        ]
        group = _combine(members, [state.value for state in members])
        callback_input: Input
        if group.kind == "done":
            callback_input = _Ready(group.value)
        elif group.kind == "dead" or (group.kind in _FAILED and not chord.include_failures):
            callback_input = _DEAD
        elif chord.include_failures and all(m.kind in ("done", "failed") for m in members):
            callback_input = _Ready([_outcome(member) for member in members])
        else:
            callback_input = _BLOCKED
        callback = self.node(chord.callback, f"{pointer}/callback", callback_input)
        if not chord.include_failures:
            return _combine([group, callback], callback.value)
        if callback.kind == "waiting" and group.kind != "waiting":
            return NodeState("running")  # members still run; the callback comes after
        return callback


def _as_input(state: NodeState) -> Input:
    if state.kind == "done":
        return _Ready(state.value)
    if state.kind in ("failed", "failing", "dead"):
        return _DEAD
    return _BLOCKED


def _combine(states: list[NodeState], value: Any) -> NodeState:
    """An inner node's state from its children's (`value`: its output if all are done)."""
    failed = [state for state in states if state.kind in _FAILED]
    is_active = any(state.kind in _ACTIVE for state in states)
    if failed:
        return NodeState("failing" if is_active else "failed", error=failed[0].error)
    if all(state.kind == "done" for state in states):
        return NodeState("done", value=value)
    if is_active or any(state.kind == "done" for state in states):
        return NodeState("running")
    if all(state.kind == "dead" for state in states):
        return NodeState("dead")
    return NodeState("waiting")


def _outcome(state: NodeState) -> dict[str, Any]:
    """A chord member's outcome, as an `include_failures` callback receives it."""
    if state.kind == "done":
        return {"status": "succeeded", "result": state.value, "error": None}
    return {"status": "failed", "result": None, "error": state.error}
