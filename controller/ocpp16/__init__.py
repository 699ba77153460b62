"""The OCPP 1.6J adapter: :class:`Ocpp16Adapter` is the supervisor's CSMS link."""

from controller.ocpp16.adapter import Ocpp16Adapter
from controller.ocpp16.link import LinkState, LinkTiming

__all__ = ["LinkState", "LinkTiming", "Ocpp16Adapter"]
