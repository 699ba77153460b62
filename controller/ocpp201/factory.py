"""Build the OCPP 2.0.1 adapter from the charger's configuration (the registry's "2.0.1").

The device model is opened (and preset from ``--ocpp-keys`` on a new state directory), the
link's security profile is raised to the configured one, and the adapter is assembled with
this run's BootNotification. Nothing connects before ``run()``.
"""

from __future__ import annotations

import logging

from ocpp.v201 import call
from ocpp.v201.datatypes import ChargingStationType

from controller.charging_schedule import ConnectorRating
from controller.csms.adapter import AdapterContext
from controller.csms.firmware import running_version
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.security import LinkSecurity, SecurityKeyNames, TlsFiles
from controller.logging_setup import add_secret
from controller.ocpp201 import boot_reason
from controller.ocpp201.adapter import Ocpp201Adapter
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.ended_values import EndedValues
from controller.ocpp201.network_profiles import NetworkProfiles
from controller.ocpp201.plug_ins import PlugIns
from controller.ocpp201.settings import csms_settings
from controller.ocpp201.transactions import SeqNumbers, end_message

log = logging.getLogger(__name__)

#: Which network profile slot the link uses, in order (the first holding a profile).
PRIORITY = "OCPPCommCtrlr.NetworkConfigurationPriority"
SECURITY_VARIABLES = SecurityKeyNames(
    profile="SecurityCtrlr.SecurityProfile", password="SecurityCtrlr.BasicAuthPassword"
)


async def create_adapter(context: AdapterContext) -> Ocpp201Adapter:
    """The 2.0.1 adapter of ``context``; raises ConfigError for an unusable configuration."""
    config = context.config
    model = DeviceModel(
        context.storage,
        defaults={
            "SecurityCtrlr.SecurityProfile": str(config.ocpp_security_profile),
            "SecurityCtrlr.BasicAuthPassword": config.ocpp_password,
            "SecurityCtrlr.Identity": config.chargepoint_id,
        },
    )
    await model.load()
    if context.keys_preset is not None:
        await model.preset(context.keys_preset)
    network = await NetworkProfiles.load(context.storage)
    model.add_check(PRIORITY, network.priority_problem)
    url, minimum_profile = config.ocpp_url, config.ocpp_security_profile
    preferred = network.preferred(model.get_list(PRIORITY))
    if preferred is not None:  # B10: the CSMS's own profile, from the boot after it was set
        network.active_slot, profile = preferred
        url, minimum_profile = profile.url, max(minimum_profile, profile.security_profile)
        log.info("connecting with network profile slot %d: %s", network.active_slot, url)
    security = LinkSecurity(
        model,
        names=SECURITY_VARIABLES,
        chargepoint_id=config.chargepoint_id,
        url=url,
        files=TlsFiles(config.ocpp_ca_file, config.ocpp_cert_file, config.ocpp_key_file),
    )
    await security.require(minimum_profile)
    add_secret(config.ocpp_password)
    firmware_policy = FirmwarePolicy.of(config)
    firmware_policy.warn()  # at every start: what the operator's settings give away
    # Before the supervisor runs, so the first session already uses the CSMS's settings.
    context.control.apply_settings(csms_settings(model))
    boot_request = call.BootNotification(
        charging_station=ChargingStationType(
            model=config.model,
            vendor_name=config.vendor,
            serial_number=config.serial or None,
            firmware_version=f"picharge-{running_version(context.firmware_installer)}",
        ),
        reason=await boot_reason.take(context.storage),
    )
    return Ocpp201Adapter(
        url=url,
        chargepoint_id=config.chargepoint_id,
        boot_request=boot_request,
        control=context.control,
        model=model,
        storage=context.storage,
        seq=await SeqNumbers.load(context.storage),
        plug_ins=await PlugIns.load(context.storage),
        ended_values=await EndedValues.load(context.storage),  # before the recovery's Ended
        security=security,
        firmware_policy=firmware_policy,
        firmware_installer=context.firmware_installer,
        connector_ratings={
            c.id: ConnectorRating(c.phases, c.max_current_a) for c in config.connectors
        },
        network=network,
        fallback_url=None if preferred is None else config.ocpp_url,
    )


#: The registry's end message of this version (power-loss recovery under another version).
__all__ = ["create_adapter", "end_message"]
