"""The loopback CSMS in a process of its own, driven by a bench over the child's stdin/stdout.

A real CSMS is another machine: what it costs a charger is the frames on the wire, not the
work of building and sending them. :class:`controller.local_csms.LocalCsms` run in the
bench's own process shares the controller's interpreter (its GIL) and event loop, so a
10,000-CALL flood it sends is paid for twice by the charger under test. Here the CSMS runs
in a child ``python`` (this file run as a script) on loopback, and the bench's process
holds only the controller and its simulated hardware.

The channel is one JSON object per line. The child writes ``{"url": ...}`` once it listens,
then ``{"call": [cp_id, action, payload, monotonic_s]}`` for every CALL it received and
answered (the bench mirrors them in :attr:`CsmsProcess.received`, so waiting for a
StatusNotification works as with an in-process CSMS), and one ``{"reply": n, ...}`` per
request ``{"request": n, "op": ...}`` it read on stdin:

- ``wait_connected`` (``cp_id``, ``timeout_s``): once the charge point has an open link;
- ``flood`` (``cp_id``, ``calls``): ``calls`` GetConfiguration CALLs sent without waiting
  for answers, then, until every one is answered (or no answer came for
  :data:`FLOOD_QUIET_S`, or ``end_flood`` came), the answers counted: the reply is a
  :class:`FloodReport`;
- ``end_flood``: the running floods stop sending, and every charge point's connection is
  reset (an RST), so the CALLs still in the CSMS's socket buffer are dropped too (the
  charger reads a flood at its frame bucket's rate, controller/ocppj/throttle.py: 10,000
  CALLs would take minutes); the charger's next answer fails and it reconnects (its
  backoff, about a second). The reply comes once the
  floods' reports are in.

Stamps are :func:`time.monotonic` seconds, one clock for every process on Linux, so the
bench compares them with its own. An error in a request is the reply's ``error`` text.

    python bench/csms_process.py [--tag UID=STATUS ...] [--nice N]   (started by CsmsProcess)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from controller.local_csms import LocalCsms, Received

#: A flood's answers are counted until this long passed without a new one (a dropped link).
FLOOD_QUIET_S = 5.0
#: How often the child looks for new answers while counting (its own loop; not the charger's).
COUNT_PERIOD_S = 0.05
#: Every this many CALLs the flood lets the child's loop read (the answers keep flowing).
YIELD_EVERY = 50
#: The child's niceness. A remote CSMS takes no CPU from the charger; one on the same two
#: cores at the same priority would (a flood keeps it busy for a second), so it yields to
#: the charger's threads (nice 19: about 1.5 % of a CPU against a busy nice-0 thread).
NICE = 19
#: This file: the child runs it as a script.
SCRIPT = Path(__file__).resolve()


@dataclasses.dataclass(frozen=True, slots=True)
class FloodReport:
    """One flood as the CSMS saw it: what it sent, what the charge point answered, when."""

    sent: int
    answered: int
    #: CALLERRORs among the answers (the charge point's busy refusals beyond its backlog).
    errors: int
    first_sent_s: float
    last_sent_s: float
    last_answer_s: float | None
    #: Why sending stopped early (the link dropped), or None.
    dropped: str | None
    #: ``end_flood`` stopped it (and dropped the link) before every CALL was answered.
    ended: bool = False


# --- the child ----------------------------------------------------------------------------


def _emit(message: dict[str, Any]) -> None:
    """One line to the bench. Small writes to a pipe the bench reads all the time."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _answer_to(text: str, prefix: str) -> int | None:
    """3 (CALLRESULT) or 4 (CALLERROR) when ``text`` answers a CALL whose id starts with
    ``prefix``; None for anything else."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if (
        isinstance(frame, list)
        and len(frame) >= 2
        and frame[0] in (3, 4)
        and isinstance(frame[1], str)
        and frame[1].startswith(prefix)
    ):
        return int(frame[0])
    return None


async def flood(
    csms: LocalCsms, cp_id: str, calls: int, prefix: str, end: asyncio.Event
) -> FloodReport:
    """``calls`` GetConfiguration CALLs as fast as the socket takes them, then their answers
    counted; ``end`` set stops both. The CSMS's frame record is emptied afterwards (the
    child's memory, not the charger's, but a bench runs dozens of floods)."""
    start = len(csms.raw_received)
    first_sent = time.monotonic()
    sent = 0
    dropped: str | None = None

    async def send() -> None:
        nonlocal sent, dropped
        try:
            for n in range(calls):
                await csms.send_raw(cp_id, json.dumps([2, f"{prefix}{n}", "GetConfiguration", {}]))
                sent += 1
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except (ConnectionClosed, KeyError) as exc:
            dropped = str(exc)

    # A throttled charger stops reading, so sending blocks once the socket's buffers are
    # full; end_flood aborts the connection, which ends it.
    sending = asyncio.create_task(send())
    ending = asyncio.create_task(end.wait())
    await asyncio.wait({sending, ending}, return_when=asyncio.FIRST_COMPLETED)
    ending.cancel()
    last_sent = time.monotonic()
    answered = errors = 0
    last_answer: float | None = None
    seen = start
    quiet_since = time.monotonic()
    while answered < sent:
        frames = csms.raw_received[seen:]
        seen += len(frames)
        before = answered
        for frame in frames:
            kind = _answer_to(frame.text, prefix)
            if kind is not None:
                answered += 1
                errors += kind == 4
        now = time.monotonic()
        if answered > before:
            quiet_since = last_answer = now
        elif now - quiet_since > FLOOD_QUIET_S:
            break
        if end.is_set():  # counted what came until now
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COUNT_PERIOD_S):
                await end.wait()
    await sending  # done, or ends once end_flood has aborted the connection
    csms.raw_received.clear()
    ended = end.is_set() and answered < sent
    return FloodReport(sent, answered, errors, first_sent, last_sent, last_answer, dropped, ended)


class _Child:
    """The CSMS and the requests the bench sends it. The child's loop thread only."""

    def __init__(self, csms: LocalCsms) -> None:
        self.csms = csms
        self._floods = itertools.count()
        self._running: dict[asyncio.Event, asyncio.Future[Any]] = {}  # end: its report

    async def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "wait_connected":
            await self.csms.wait_connected(request["cp_id"], timeout_s=request["timeout_s"])
            return {}
        if op == "flood":
            prefix = f"flood{next(self._floods)}-"
            end = asyncio.Event()
            running = asyncio.ensure_future(
                flood(self.csms, request["cp_id"], request["calls"], prefix, end)
            )
            self._running[end] = running
            try:
                return dataclasses.asdict(await running)
            finally:
                del self._running[end]
        if op == "end_flood":
            floods = list(self._running.items())
            for end, _ in floods:
                end.set()
            # Abort first: a send waiting for the charger to read fails at once, and what the
            # socket still holds is dropped with the connection.
            await self.csms.drop_connections(reset=True)
            await asyncio.gather(*(running for _, running in floods), return_exceptions=True)
            return {"ended": len(floods)}
        raise ValueError(f"unknown op {op!r}")

    async def answer(self, request: dict[str, Any]) -> None:
        try:
            reply = await self.serve(request)
        except Exception as exc:  # reported to the bench, which raises it there
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _emit({"reply": request.get("request"), **reply})


async def _child_main(tags: dict[str, str]) -> None:
    def on_message(cp_id: str, action: str, payload: dict[str, Any]) -> None:
        _emit({"call": [cp_id, action, payload, time.monotonic()]})

    csms = LocalCsms(authorized_tags=tags, on_message=on_message)
    child = _Child(csms)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    _emit({"url": await csms.start()})
    tasks: set[asyncio.Task[None]] = set()
    try:
        while line := await stdin.readline():  # EOF: the bench is done (or gone)
            task = asyncio.create_task(child.answer(json.loads(line)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await csms.stop()


def child_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tag", action="append", default=[], help="UID=STATUS the CSMS authorizes (repeatable)"
    )
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority")
    args = parser.parse_args()
    os.nice(args.nice)
    logging.basicConfig(level=logging.CRITICAL)
    tags = dict(item.split("=", 1) for item in args.tag)
    asyncio.run(_child_main(tags))


# --- the bench's side ---------------------------------------------------------------------


class CsmsProcess:
    """The bench's handle on the child CSMS; the bench's loop thread only.

    Offers what a bench waits on with an in-process :class:`LocalCsms` (:meth:`start`,
    :meth:`stop`, :attr:`url`, :attr:`received`, :meth:`wait_for`, :meth:`wait_connected`)
    and :meth:`flood`. ``authorized_tags`` as for :class:`LocalCsms`; ``nice``: the
    child's niceness (:data:`NICE`).
    """

    def __init__(self, *, authorized_tags: dict[str, str] | None = None, nice: int = NICE) -> None:
        self._tags = dict(authorized_tags or {})
        self._nice = nice
        self._child: asyncio.subprocess.Process | None = None
        self._exit_code: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._url: asyncio.Future[str] | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._requests = itertools.count()
        self._changed = asyncio.Event()
        self.received: list[Received] = []

    async def start(self) -> str:
        """Start the child and return its URL once it listens."""
        tags = [arg for uid, status in self._tags.items() for arg in ("--tag", f"{uid}={status}")]
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            *tags,
            "--nice",
            str(self._nice),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._url = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(), name="csms-process-reader")
        async with asyncio.timeout(30):
            return await self._url

    @property
    def url(self) -> str:
        if self._url is None or not self._url.done():
            raise RuntimeError("the CSMS process has not started")
        return self._url.result()

    @property
    def exit_code(self) -> int | None:
        """The child's exit status once it ended (0: it stopped as asked); None before."""
        return self._exit_code

    async def stop(self) -> None:
        """Close the child's stdin (it stops its server and exits); kill it if it hangs.
        Idempotent."""
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        child.stdin.close()
        try:
            async with asyncio.timeout(10):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()
        self._exit_code = child.returncode
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        while line := await self._child.stdout.readline():
            message = json.loads(line)
            if "call" in message:
                cp_id, action, payload, at_s = message["call"]
                self.received.append(Received(cp_id, action, payload, at_s))
                self._changed.set()
            elif "reply" in message:
                future = self._replies.pop(message.pop("reply"), None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif "url" in message and self._url is not None:
                self._url.set_result(message["url"])
        gone = ConnectionError("the CSMS process ended")
        for future in [self._url, *self._replies.values()]:
            if future is not None and not future.done():
                future.set_exception(gone)

    async def _request(self, op: str, **fields: Any) -> dict[str, Any]:
        if self._child is None or self._child.stdin is None:
            raise RuntimeError("the CSMS process is not running")
        number = next(self._requests)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[number] = future
        line = json.dumps({"request": number, "op": op, **fields}) + "\n"
        self._child.stdin.write(line.encode())
        await self._child.stdin.drain()
        reply = await future
        if "error" in reply:
            raise RuntimeError(f"CSMS process, {op}: {reply['error']}")
        return reply

    async def wait_connected(self, cp_id: str, *, timeout_s: float = 10.0) -> None:
        await self._request("wait_connected", cp_id=cp_id, timeout_s=timeout_s)

    async def flood(self, cp_id: str, calls: int) -> FloodReport:
        """``calls`` CALLs sent by the child at once; returns when their answers are counted
        (or :meth:`end_flood` ended it). The child starts sending as soon as it reads the
        request (well under 1 ms)."""
        return FloodReport(**await self._request("flood", cp_id=cp_id, calls=calls))

    async def end_flood(self) -> int:
        """Stop every running flood and drop the charge points' links with what they still
        hold unread; returns how many floods were running. The charger reconnects."""
        return int((await self._request("end_flood"))["ended"])

    async def wait_for(
        self,
        action: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda p: True,
        *,
        timeout_s: float = 10.0,
        after: int = 0,
        cp_id: str | None = None,
    ) -> dict[str, Any]:
        """As :meth:`LocalCsms.wait_for`: the first recorded ``action`` at index >= ``after``
        matching ``predicate``; TimeoutError after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._changed.clear()
                    for item in self.received[after:]:
                        if (
                            item.action == action
                            and cp_id in (None, item.cp_id)
                            and predicate(item.payload)
                        ):
                            return item.payload
                    await self._changed.wait()
        except TimeoutError:
            arrived = [f"{r.cp_id} {r.action}" for r in self.received[after:]][-10:]
            raise TimeoutError(f"no {action} matching within {timeout_s:g} s: {arrived}") from None


if __name__ == "__main__":
    child_main()
