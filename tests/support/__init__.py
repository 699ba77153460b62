"""What the tests share, one module per kind of thing; no tests here.

- ``wait``: :func:`until` (async) and :func:`until_sync`: wait for a condition, never for a
  fixed time; a timeout names what was awaited.
- ``csms``: the loopback CSMS fixtures (``csms``, ``make_csms``) and the test tags.
- ``sim_app``: the whole controller on simulated hardware in the test's loop
  (:class:`AppRig`, ``controller()``), as ``picharge run --sim`` runs it.
- ``standalone``: the same without a CSMS, with a local card list (:class:`Charger`,
  ``running()``).
- ``sim_hardware``: the simulated hardware and its drivers alone (``simulated_hardware()``).
- ``ocpp16_adapter``: the OCPP 1.6 adapter against a real CSMS with a fake supervisor
  (:class:`AdapterRig`, :class:`FakeControl`, the ``make_rig`` fixture).
- ``firmware_rig`` / ``diagnostics``: that rig with a firmware installer (``make_fw_rig``) or
  a log to upload (``make_diag_rig``); ``firmware_packages``: tiny real picharge wheels
  (one may leave a marker file when its code runs); ``firmware_signing``: a release signer
  and the detached ``.sig`` files of plain UpdateFirmware.
- ``card_reader``: a reader running as a task (:class:`Harness`) and the ``no_leaks`` check.
- ``file_servers``: local HTTP(S) and FTP servers for downloads and uploads.
- ``device_model``: OCPP 2.0.1 quiet keys, Get/SetVariables of one variable, TransactionEvent
  matches.
- ``pki``: certificates and TLS contexts; ``security``: the charger with a security profile
  and the log it writes.
- ``logs``: the ``root_logger`` fixture, which puts the root logger back after a test that
  configures logging (``picharge`` commands run in process do).

Fixtures reach every test module through ``pytest_plugins`` in ``tests/conftest.py``; test
modules import only classes, constants and helper functions from here, never from each other.
"""
