"""Simulated hardware: an EV and the devices a charger talks to, at the lowest layer.

The simulator replaces hardware, not drivers: a real pymodbus server for the meter,
pseudo-terminals for serial readers, gpiozero MockFactory pins, an SMBus stand-in for I2C
chips and temporary sysfs trees. The drivers run unchanged on top of it.
"""
