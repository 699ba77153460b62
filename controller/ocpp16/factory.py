"""Build the OCPP 1.6J adapter from the charger's configuration (the registry's "1.6").

The operator's key preset is read (``--ocpp-keys`` on a new state directory, else the one
kept since), the 1.6 key table is opened with it as defaults and its feature profiles, the
link's security profile is raised to the configured one, the supervisor gets the session
settings the keys hold, and the adapter is assembled. Nothing connects before ``run()``.
"""

from __future__ import annotations

from controller.charging_schedule import ConnectorRating
from controller.csms.adapter import AdapterContext
from controller.csms.firmware import running_version
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.security import LinkSecurity, TlsFiles
from controller.logging_setup import add_secret
from controller.ocpp16.adapter import Ocpp16Adapter
from controller.ocpp16.keys import open_ocpp_config
from controller.ocpp16.settings import SECURITY_KEYS, csms_settings
from controller.ocpp16.transaction_sender import end_message


async def create_adapter(context: AdapterContext) -> Ocpp16Adapter:
    """The 1.6 adapter of ``context``; raises ConfigError for an unusable configuration."""
    config = context.config
    ocpp_config = await open_ocpp_config(
        context.storage,
        number_of_connectors=len(config.connectors),
        preset_path=context.keys_preset,
        defaults={
            "SecurityProfile": str(config.ocpp_security_profile),
            "AuthorizationKey": config.ocpp_password,
        },
    )
    security = LinkSecurity(
        ocpp_config,
        names=SECURITY_KEYS,
        chargepoint_id=config.chargepoint_id,
        url=config.ocpp_url,
        files=TlsFiles(config.ocpp_ca_file, config.ocpp_cert_file, config.ocpp_key_file),
    )
    await security.require(config.ocpp_security_profile)
    add_secret(config.ocpp_password)  # also once the CSMS has changed AuthorizationKey
    firmware_policy = FirmwarePolicy.of(config)
    firmware_policy.warn()  # at every start: what the operator's settings give away
    # Before the supervisor runs, so the first session already uses the CSMS's settings.
    context.control.apply_settings(csms_settings(ocpp_config))
    return Ocpp16Adapter(
        url=config.ocpp_url,
        chargepoint_id=config.chargepoint_id,
        vendor=config.vendor,
        model=config.model,
        serial=config.serial,
        firmware_version=f"picharge-{running_version(context.firmware_installer)}",
        control=context.control,
        config=ocpp_config,
        storage=context.storage,
        connector_ratings={
            c.id: ConnectorRating(c.phases, c.max_current_a) for c in config.connectors
        },
        security=security,
        firmware_policy=firmware_policy,
        firmware_installer=context.firmware_installer,
    )


#: The registry's end message of this version (power-loss recovery under another version).
__all__ = ["create_adapter", "end_message"]
