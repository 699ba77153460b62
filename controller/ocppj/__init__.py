"""OCPP-J itself, shared by every version adapter: frames, CALLERROR codes, calls.

What the RPC framework of OCPP-J (the websocket transport of 1.6 and 2.0.1) does the same in
every version lives here once: checking raw frames, choosing the CALLERROR for a call that
breaks its schema (the version only changes the spelling of one code: 1.6
``FormationViolation``, 2.0.1 ``FormatViolation``), and sending calls over the current
connection. It may use the ``ocpp`` library (unlike :mod:`controller.csms`), but never a
version package.
"""
