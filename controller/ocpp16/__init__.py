"""The OCPP 1.6J adapter: :class:`Ocpp16Adapter` is the supervisor's CSMS link."""

from controller.csms.link import LinkState, LinkTiming
from controller.ocpp16.adapter import Ocpp16Adapter

__all__ = ["LinkState", "LinkTiming", "Ocpp16Adapter"]
