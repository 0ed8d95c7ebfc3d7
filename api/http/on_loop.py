"""Commands decided on the event loop; only their waits for the store go to a thread.

Handing a whole command to a request thread and its result back to the loop cost
the server more than the command's own rules: every hand-over is a fight for the
interpreter lock between the loop and up to eight request threads, and under load
the loop waited for it while a quarter of the machine stood idle (bench/README.md,
"HTTP"). Here a command runs in a greenlet on the loop's own thread, so its rules
run at once, in turn with the loop's other work, and whenever the registry has to
block (a read) it hands only that call to the loop's executor, and a commit to the
group committer's own threads, which call back (``GroupCommitter.submit_later``);
the loop goes on meanwhile. The registry
neither knows nor cares: it makes every blocking call through ``Registry.blocking``,
which ``offload`` replaces. Called from any other thread, ``offload`` just calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

from greenlet import getcurrent, greenlet

from api.http.deps import in_thread
from domain.committer import Commit

T = TypeVar("T")


class _Command(greenlet):  # type: ignore[misc]
    """A command running on the event loop's thread."""


class _Blocking:
    """What a command asks its driver for: run this call elsewhere, hand back its result."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[[], Any]):
        self.call = call


async def on_loop(command: Callable[[], T]) -> T:
    """Run a synchronous command on the loop, its blocking calls in the loop's executor."""
    loop = asyncio.get_running_loop()
    runner = _Command(command)
    asked = runner.switch()
    while not runner.dead:
        assert isinstance(asked, _Blocking)
        try:
            if isinstance(asked.call, Commit):
                answer = await _committed(loop, asked.call)
            else:
                answer = await in_thread(asked.call)
        except BaseException as e:  # raised inside the command, where it made the call
            asked = runner.throw(e)
        else:
            asked = runner.switch(answer)
    return cast(T, asked)


async def _committed(loop: asyncio.AbstractEventLoop, commit: Commit) -> Any:
    """A group commit awaited without a thread of ours waiting: the committer calls back."""
    done: asyncio.Future[Any] = loop.create_future()

    def settle(job: Any) -> None:
        if not done.done():
            try:
                done.set_result(job.outcome())
            except BaseException as e:
                done.set_exception(e)

    def hand_back(job: Any) -> None:  # on a committing thread
        loop.call_soon_threadsafe(settle, job)

    commit.start(hand_back)
    return await done


def offload(call: Callable[[], T]) -> T:
    """``Registry.blocking`` for a server: from a command on the loop, wait elsewhere."""
    current = getcurrent()
    if isinstance(current, _Command):
        return cast(T, current.parent.switch(_Blocking(call)))
    return call()
