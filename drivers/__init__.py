"""Device drivers: bytes and pin levels in, typed readings and events out.

A driver knows its wire format and nothing about charging or OCPP. Each device kind has one
small interface in :mod:`drivers.base`; :mod:`drivers.registry` picks an implementation by the
type name given in configuration.
"""
