"""The local web page, its JSON API under ``/api/v1/`` and the live stream (issue 15).

An edge of the core like a CSMS adapter: it hears the supervisor's event broadcast
(:mod:`controller.events`), reads :meth:`controller.supervisor.Supervisor.snapshot`, and
acts only through the supervisor's methods (``set_limit`` with
:attr:`controller.limits.LimitSource.USER`, remote start and stop, availability). The core
never imports this package (an import-linter contract says so). It runs on the
controller's loop, but nothing it does can hold the loop: SQLite reads and password
hashing run on a thread of their own (``web``), each live client has a bounded queue, and a
crash restarts the server without touching charging (:class:`server.WebServer`).
"""
