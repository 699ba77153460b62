"""Local energy management (issue 16): the grid meter, the main fuse, later solar and circuits.

An edge like the CSMS adapters: it hears the grid meter and the connectors' own meters and
acts on the charger only through ``Supervisor.set_limit(connector, LOAD_MANAGEMENT, A)``.
The decisions are pure functions (:mod:`controller.energy.fuse`); the rest moves readings.
"""
