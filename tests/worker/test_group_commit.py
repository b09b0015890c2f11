"""Group commit: callers arriving while a write runs share the next write; errors reach them."""

from __future__ import annotations

import asyncio

import pytest

from worker.group_commit import GroupCommit


class Recorder:
    """A write that takes a while and remembers each batch it was given."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.release = asyncio.Event()
        self.release.set()

    async def write(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_on in items:
            raise RuntimeError(f"refused {self.fail_on}")
        return [item.upper() for item in items]


async def test_items_arriving_during_a_write_go_out_together_in_the_next() -> None:
    recorder = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write)
    recorder.release.clear()
    first = asyncio.create_task(commit.submit("a"))
    await asyncio.sleep(0.01)  # the write of "a" is under way, held open
    rest = [asyncio.create_task(commit.submit(item)) for item in ("b", "c", "d")]
    await asyncio.sleep(0.01)
    recorder.release.set()

    assert await first == "A"
    assert [await task for task in rest] == ["B", "C", "D"]
    assert recorder.batches == [["a"], ["b", "c", "d"]]


async def test_items_of_one_loop_turn_share_the_first_write() -> None:
    recorder = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write)
    results = await asyncio.gather(*(commit.submit(item) for item in "xyz"))
    assert results == ["X", "Y", "Z"]
    assert recorder.batches == [["x", "y", "z"]]


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=2)
    await asyncio.gather(*(commit.submit(item) for item in "abcde"))
    assert recorder.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_failed_write_fails_its_callers_only_and_the_next_write_goes_on() -> None:
    recorder = Recorder(fail_on="b")
    commit: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=2)
    outcomes = await asyncio.gather(
        *(commit.submit(item) for item in "abc"), return_exceptions=True
    )
    assert [type(outcome) for outcome in outcomes[:2]] == [RuntimeError, RuntimeError]
    assert outcomes[2] == "C"
    assert await commit.submit("d") == "D"  # a fresh writer after the last one ended


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    recorder = Recorder()
    commit: GroupCommit[str, str] = GroupCommit(recorder.write)
    recorder.release.clear()
    waiting = [asyncio.create_task(commit.submit(item)) for item in "ab"]
    await asyncio.sleep(0.01)
    waiting[0].cancel()
    recorder.release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]
    assert await waiting[1] == "B"
    assert recorder.batches == [["a", "b"]]  # the write itself still happened
