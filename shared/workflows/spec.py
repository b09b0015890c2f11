"""What a workflow is (chain, group, chord, step: a tree) and the checks made before storing one.

A node's *output* is what the node after it receives as *input*:

- a step's output is its job's result (an object, the job type's Result);
- a chain passes each node's output to the next; its output is the last node's;
- a group gives its input to every member; its output is the list of their outputs, in order;
- a chord runs its group, then its callback on the list of their outputs (with
  `include_failures`: on the list of their outcomes, `{status, result, error}`, once all
  members have finished, whether they succeeded or not); its output is the callback's.

A step takes values from its input with `args_from`, mapping each of its Args' fields to a
source: `$` (the whole input), `name` (that field of the input object) or `*.name` (that field
of every item of the input list). Everything is checked against the job types' contracts
before anything is stored: unknown types, args that do not fit, sources the input cannot have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.contracts import JobType, Registry
from shared.errors import InvalidWorkflow, QueueNotAllowed, UnknownJobType
from shared.jobs.concurrency_keys import key_option_problem
from shared.jobs.submit import SubmitOptions
from shared.workflows.shapes import (
    OUTCOME,
    ListShape,
    ObjectShape,
    Shape,
    result_shape,
    source_problem,
)

MAX_STEPS = 500
MAX_DEPTH = 16
Source = Annotated[
    str,
    Field(
        pattern=r"^(\$|\*\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)$",
        description="`$` (the whole input), `name` (a field of it) or `*.name` (of each item).",
    ),
]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepNode(_Node):
    """One job of a registered type."""

    type: Literal["step"]
    job: str = Field(max_length=200, description="The job type's name (see `GET /job-types`).")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Args given here; with `args_from`, the whole Args."
    )
    args_from: dict[str, Source] = Field(
        default_factory=dict,
        max_length=100,
        description="Args taken from the step's input: `{arg: source}`.",
    )
    options: SubmitOptions = Field(default_factory=SubmitOptions)


class ChainNode(_Node):
    """Nodes one after another, each receiving the previous one's output."""

    type: Literal["chain"]
    steps: list[WorkflowNode] = Field(min_length=1, max_length=MAX_STEPS)


class GroupNode(_Node):
    """Nodes run in parallel, each receiving the group's input."""

    type: Literal["group"]
    steps: list[WorkflowNode] = Field(min_length=1, max_length=MAX_STEPS)


class ChordNode(_Node):
    """A group, then a callback receiving all of the group's outputs."""

    type: Literal["chord"]
    group: list[WorkflowNode] = Field(min_length=1, max_length=MAX_STEPS)
    callback: WorkflowNode
    include_failures: bool = Field(
        False,
        description=(
            "Call back once every member finished, with `{status, result, error}` per member,"
            " even if some failed (otherwise a failed member fails the chord)."
        ),
    )


WorkflowNode = Annotated[StepNode | ChainNode | GroupNode | ChordNode, Field(discriminator="type")]
for _model in (ChainNode, GroupNode, ChordNode):
    _model.model_rebuild()


def children(node: WorkflowNode, pointer: str) -> Iterator[tuple[str, WorkflowNode]]:
    """A node's direct children with their JSON pointers in the definition."""
    if isinstance(node, ChainNode | GroupNode):
        for index, child in enumerate(node.steps):
            yield f"{pointer}/steps/{index}", child
    elif isinstance(node, ChordNode):
        for index, child in enumerate(node.group):
            yield f"{pointer}/group/{index}", child
        yield f"{pointer}/callback", node.callback


def steps_of(node: WorkflowNode, pointer: str = "") -> Iterator[tuple[str, StepNode]]:
    """Every step of the tree, in definition order, with its JSON pointer."""
    if isinstance(node, StepNode):
        yield pointer, node
        return
    for child_pointer, child in children(node, pointer):
        yield from steps_of(child, child_pointer)


@dataclass
class _Check:
    registry: Registry
    issues: list[dict[str, Any]]
    steps: int = 0

    def issue(self, pointer: str, *loc: str | int, msg: str, kind: str) -> None:
        where = [int(part) if part.isdigit() else part for part in pointer.split("/")[1:]]
        self.issues.append({"loc": ["body", "workflow", *where, *loc], "msg": msg, "type": kind})


def check_workflow(node: WorkflowNode, registry: Registry) -> None:
    """Refuse (`InvalidWorkflow`, with one issue per problem) a workflow that cannot run."""
    check = _Check(registry, [])
    _shape(check, node, "", None, depth=1)
    if check.steps > MAX_STEPS:
        check.issue("", msg=f"a workflow has at most {MAX_STEPS} steps", kind="too_many_steps")
    if check.issues:
        raise InvalidWorkflow(issues=check.issues)


def _shape(
    check: _Check, node: WorkflowNode, pointer: str, given: Shape | None, depth: int
) -> Shape:
    """Check a node receiving input of shape `given` (None: no input); its output's shape."""
    if depth > MAX_DEPTH:
        check.issue(pointer, msg=f"workflows nest at most {MAX_DEPTH} deep", kind="too_deep")
        return ObjectShape()
    if isinstance(node, StepNode):
        return _check_step(check, node, pointer, given)
    if isinstance(node, ChainNode):
        current = given
        for child_pointer, child in children(node, pointer):
            current = _shape(check, child, child_pointer, current, depth + 1)
        assert current is not None  # noqa: S101 (a chain has at least one step)
        return current
    if isinstance(node, GroupNode):
        return ListShape(
            tuple(_shape(check, child, p, given, depth + 1) for p, child in children(node, pointer))
        )
    members = ListShape(
        tuple(
            _shape(check, child, f"{pointer}/group/{index}", given, depth + 1)
            for index, child in enumerate(node.group)
        )
    )
    if node.include_failures:
        members = ListShape((OUTCOME,) * len(node.group))
    return _shape(check, node.callback, f"{pointer}/callback", members, depth + 1)


def _check_step(check: _Check, step: StepNode, pointer: str, given: Shape | None) -> Shape:
    check.steps += 1
    try:
        job_type = check.registry.get(step.job)
    except UnknownJobType:
        job_type = None
    if job_type is None or job_type.is_internal:
        check.issue(pointer, "job", msg=f"no job type named {step.job!r}", kind="unknown_job_type")
        return ObjectShape()
    _check_args_from(check, step, job_type, pointer, given)
    _check_args(check, step, job_type, pointer)
    try:
        job_type.queue_for(step.options.queue)
    except QueueNotAllowed as exc:
        check.issue(pointer, "options", "queue", msg=exc.message, kind="queue_not_allowed")
    problem = key_option_problem(job_type, step.options.concurrency_key)
    if problem is not None:
        check.issue(pointer, "options", "concurrency_key", msg=problem, kind="option_refused")
    return result_shape(job_type.result)


def _check_args_from(
    check: _Check, step: StepNode, job_type: JobType[Any, Any], pointer: str, given: Shape | None
) -> None:
    """Each mapped arg exists, is not given twice, and its source can be read from the input."""
    for arg, source in step.args_from.items():
        if arg not in job_type.args.model_fields:
            msg = f"`{job_type.name}` has no arg {arg!r}"
            check.issue(pointer, "args_from", arg, msg=msg, kind="unknown_arg")
        elif arg in step.args:
            msg = "given in both `args` and `args_from`"
            check.issue(pointer, "args_from", arg, msg=msg, kind="arg_given_twice")
        target = job_type.args.model_json_schema().get("properties", {}).get(arg, {})
        problem = source_problem(source, given, target)
        if problem is not None:
            check.issue(pointer, "args_from", arg, msg=problem, kind="bad_source")


def _check_args(check: _Check, step: StepNode, job_type: JobType[Any, Any], pointer: str) -> None:
    """The given args fit the type's Args, but for what `args_from` fills in on release."""
    if "\\u0000" in json.dumps(step.args):  # jsonb cannot store it; Args may not see it here
        msg = "text must not contain the NUL character (U+0000)"
        check.issue(pointer, "args", msg=msg, kind="value_error")
        return
    try:
        job_type.args.model_validate(step.args)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            if error["type"] == "missing" and loc and loc[0] in step.args_from:
                continue  # filled from the input when the step is released
            if not loc and step.args_from:
                continue  # a check of the whole Args: only the released step can tell
            check.issue(pointer, "args", *loc, msg=error["msg"], kind=error["type"])


def resolve(source: str, value: Any) -> Any:
    """The value `source` names in an input (checked before storing; None if it is missing)."""
    try:
        if source == "$":
            return value
        if source.startswith("*."):
            return [item[source[2:]] for item in value]
        return value[source]
    except (KeyError, TypeError):
        return None
