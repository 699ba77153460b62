"""What a version-neutral service sees of a call to the CSMS: it succeeds or raises
:class:`CallFailed`.

Services in :mod:`controller.csms` send through a small callable the version adapter gives
them (:data:`Send`); the adapter turns every protocol-specific failure (a CALLERROR, an
invalid or missing answer, a closed link) into :class:`CallFailed`, so no service needs to
know which OCPP version or library is speaking.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class CallFailed(Exception):
    """An outgoing call got no usable answer: a CALLERROR, an invalid response or a timeout."""


class CallRefused(CallFailed):
    """The CSMS did answer, but with a CALLERROR or an answer that fails validation: it is
    reachable, so nothing may be decided as if it were offline."""


#: Send one request to the CSMS and return its answer; raises :class:`CallFailed`.
Send = Callable[[Any], Awaitable[Any]]

#: Run a coroutine as a tracked background task named ``name`` (the adapter owns the tasks,
#: cancels them when it stops and logs any that fail). Loop thread only.
Spawn = Callable[[Coroutine[Any, Any, object], str], None]
