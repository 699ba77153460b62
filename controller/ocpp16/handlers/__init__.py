"""The CSMS's 1.6 requests by feature, each a mixin of the 1.6 ChargePoint.

:class:`~controller.ocpp16.charge_point.OcppChargePoint` inherits them all. A handler turns a
request into a call on a service (:mod:`controller.ocpp16.services`) and its outcome into a
``call_result``; it holds no state of its own.
"""
