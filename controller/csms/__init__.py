"""What every CSMS link needs whatever OCPP version it speaks.

The link runner (connect, TLS, backoff, timers), the durable transaction queue, the
certificate store and signing, firmware jobs and their signatures, log uploads and the
charging-profile store. Nothing here imports the ``ocpp`` library's version packages or a
version adapter (``controller.ocpp16``): an adapter maps its protocol onto these services and
hands them small callables (:mod:`.calls`) to send what they need to send.
"""
