"""MQTT and Home Assistant discovery: an edge of the core, like the CSMS adapters.

:class:`controller.mqtt.bridge.MqttBridge` listens to the supervisor's event broadcast,
publishes each connector's state from :meth:`controller.supervisor.Supervisor.snapshot`
and takes two commands (a user current limit, enabled) through Supervisor methods only.
A stuck or absent broker costs the charger nothing: the listener only wakes the
publisher, and everything that waits on the network runs in the bridge's own task.
Topics and payloads: docs/mqtt.md. The core never imports this package (import-linter).
"""
