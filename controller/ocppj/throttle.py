"""How fast the charger reads the CSMS's frames that are not answers to its own calls: a
token bucket per connection, so a CSMS cannot make the charger spend more than a sliver of
a CPU on its frames, however fast it sends them (issue 12 §2).

Why: the charger's safety path shares the interpreter with the event loop. A 10,000-CALL
flood at wire speed kept the loop thread parsing and refusing frames for seconds and held
the GIL away from the ADS1115's ``cp-sampler`` thread for up to ~40 ms (docs/benchmarks.md,
"The flood's CSMS in a process of its own"). Answering each excess CALL with a busy
CALLERROR bounds memory, not CPU.

What: every incoming frame that does not answer a call of ours still waiting (a CALL, an
unsolicited CALLRESULT or CALLERROR, a malformed frame) takes a token. The bucket holds
:data:`FRAME_BURST` tokens, refilled at :data:`FRAME_RATE_PER_S`. When it is empty the
receive loop waits for the next token before it handles the frame and reads the next one:
the websocket's bounded receive queue (:data:`controller.csms.link.RECEIVE_QUEUE_FRAMES`)
fills, websockets stops reading the socket, and TCP flow control pushes back on the CSMS.
The charger's loop is idle meanwhile. Answers to our own calls never take or wait for a
token (an outbox draining after an outage is answered at full speed), but TCP delivers in
order: an answer sent behind a flood is read once the frames before it were.

What happens to a link whose CSMS keeps flooding: while we do not read, our keepalive's
pong (WebSocketPingInterval) waits behind the flood too and the CSMS's own pings go
unanswered, so one side drops the link after its ping timeout; the charger reconnects with
its usual backoff, sends no BootNotification (a reconnect, not a boot), and the frames the
CSMS had queued are gone with the TCP connection. A CSMS that floods again gets the same
again: the link is lost now and then, the safety path never. A CSMS that follows OCPP-J
(one CALL, then wait for the answer) is never slowed: its calls are far below the rate.
Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Frames (other than answers to our calls) handled at once before the rate applies. A CSMS
#: configuring a charger sends many calls one after another (ChangeConfiguration per key,
#: a SendLocalList in parts, TriggerMessage for each connector): a hundred leaves room for
#: any such burst, and costs the loop some 20 ms of work at most.
FRAME_BURST = 100
#: Frames per second (other than answers to our calls) handled once the burst is spent.
#: OCPP-J has a CSMS wait for each answer before its next CALL, so even a CSMS on the same
#: LAN with a script of calls stays well under this over a few seconds; a flood at wire
#: speed (tens of thousands a second) is cut to this, a fraction of a percent of a CPU.
FRAME_RATE_PER_S = 20.0
#: What a flood makes happen on a connection (a frame held back, a CALL refused as busy, an
#: answer to nothing dropped) is logged at its 1st, 10th, 100th... time: each kind shows in
#: the journal, a flood of it costs a line per tenfold.
LOGGED_COUNTS = frozenset(10**n for n in range(12))


class FrameBucket:
    """The token bucket of one connection: :meth:`take` returns at once while tokens are
    left, else after the next one is due. ``clock`` is monotonic seconds."""

    def __init__(
        self,
        burst: int = FRAME_BURST,
        rate_per_s: float = FRAME_RATE_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or rate_per_s <= 0:
            raise ValueError(
                f"a frame bucket needs burst >= 1 and a rate > 0, not {burst}, {rate_per_s}"
            )
        self._burst = float(burst)
        self._rate = rate_per_s
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        #: Frames that had to wait for a token on this connection (a diagnostic).
        self.held_back = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    async def take(self) -> None:
        """Take a token, waiting for it if the bucket is empty."""
        self._refill()
        if self._tokens < 1.0:
            self.held_back += 1
            if self.held_back in LOGGED_COUNTS:  # a flood must not flood the journal
                log.warning(
                    "CSMS sends frames faster than %g/s (burst %d): %d held back on this "
                    "link, the socket no longer read meanwhile",
                    self._rate,
                    self._burst,
                    self.held_back,
                )
            await asyncio.sleep((1.0 - self._tokens) / self._rate)
            self._refill()
        self._tokens -= 1.0
