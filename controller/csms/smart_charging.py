"""Smart charging at run time: the installed profiles, on disk, pushed to the connectors.

:class:`SmartCharging` owns the :class:`~controller.csms.profiles.ProfileBook` and its
:class:`~controller.csms.profile_store.ProfileStore`. A profile is on disk before
SetChargingProfile answers Accepted, and the book comes back from disk when :meth:`run`
starts, so limits hold across restarts. Each connector's composite limit
(:mod:`controller.charging_schedule`) reaches the supervisor as
``control.set_current_limit(connector_id, amps or None)``:

- at once when a CSMS request changes the book (:meth:`refresh`, called by the handlers,
  which never run inside the supervisor's command execution);
- on the next loop iteration after a transaction starts or ends (:meth:`refresh_soon`:
  the adapter hears of transactions from inside the supervisor executing a connector's
  commands, where feeding that connector a new limit would be re-entrant);
- at each schedule boundary: :meth:`run` sleeps until the next instant at which any
  connector's composite may change (at most :data:`MAX_SLEEP_S`, so a wall clock set by NTP
  after boot is noticed), never polling.

Only changes are pushed (a connector starts without a limit). The limit is in amperes per
phase; below 6 A the connector machine suspends charging (SuspendedEVSE) and 0 A pauses.
Version-neutral: profiles arrive through the version's parser (``parse``, which also reads
them back from disk) and the rules come from :class:`SmartChargingSettings`. Everything runs
on the loop thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.charging_schedule import (
    ConnectorRating,
    RateUnit,
    composite_limit_at,
    composite_schedule,
    from_amps,
    next_boundary,
)
from controller.csms.calls import Spawn
from controller.csms.profile_store import ProfileStore, StoredProfile
from controller.csms.profiles import (
    InstalledProfile,
    ParseProfile,
    ProfileBook,
    ProfileRejected,
    ProfileRules,
    Purpose,
)
from controller.domain import ChargePointControl, Transaction, utc_now
from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

#: The boundary timer wakes at least this often (s), whatever the schedules say.
MAX_SLEEP_S = 60.0


class SmartChargingSettings(Protocol):
    """Read at each use; a version adapter maps its keys."""

    def rules(self) -> ProfileRules:
        """What a new profile may be (stack levels, units, periods, how many)."""
        ...

    @property
    def connection_timeout_s(self) -> float:
        """How long a remote start's profile waits for its session on any connector."""
        ...


@dataclass(frozen=True, slots=True)
class CompositeAnswer:
    """GetCompositeSchedule: from ``start`` for ``duration_s``, limits in ``unit``."""

    connector_id: int
    start: dt.datetime
    duration_s: int
    unit: RateUnit
    #: (start offset s, limit, numberPhases of the period that sets it or None)
    periods: tuple[tuple[int, float, int | None], ...]

    def wire_periods(self) -> list[dict[str, Any]]:
        """The periods as ChargingSchedulePeriod (snake_case; 1.6 and 2.0.1 spell it
        alike), numberPhases only where a period gave it."""
        return [
            {"start_period": offset, "limit": limit}
            | ({} if phases is None else {"number_phases": phases})
            for offset, limit, phases in self.periods
        ]


class SmartCharging:
    """The charge point's charging profiles and the limits they impose. Loop thread only.

    ``ratings`` gives each connector's phases (for limits in W) and maximum current (what
    GetCompositeSchedule reports where no profile limits); a connector missing from it is
    taken as three-phase 32 A. ``spawn`` runs a background coroutine (a storage write that
    follows a transaction event) in a tracked task whose failure is logged.
    ``transaction_id_of`` is how the version's CSMS names a transaction, which a TxProfile's
    transactionId must match (1.6: the id the CSMS gave; 2.0.1: the charger's own).
    """

    def __init__(
        self,
        *,
        control: ChargePointControl,
        settings: SmartChargingSettings,
        parse: ParseProfile,
        storage: Storage,
        spawn: Spawn,
        clock: Callable[[], dt.datetime] = utc_now,
        ratings: Mapping[int, ConnectorRating] | None = None,
        transaction_id_of: Callable[[Transaction], object] = lambda tx: tx.csms_id,
    ) -> None:
        self._control = control
        self._transaction_id_of = transaction_id_of
        self._settings = settings
        self._parse = parse
        self._store = ProfileStore(storage)
        self._spawn = spawn
        self._clock = clock
        self._ratings = dict(ratings or {})
        self.book = ProfileBook()
        self._pushed: dict[int, float | None] = {}
        self._lock = asyncio.Lock()  # one change at a time: disk order = memory order
        self._wake = asyncio.Event()
        self._running = False

    @property
    def running(self) -> bool:
        """True once :meth:`run` has loaded the stored profiles (until it ends)."""
        return self._running

    # --- configuration ----------------------------------------------------------------------

    def rating(self, connector_id: int) -> ConnectorRating:
        """Connector 0 (the charge point): the most phases and current of any connector."""
        if connector_id == 0:
            ratings = [self.rating(c) for c in self._control.connector_ids]
            return ConnectorRating(
                max(r.phases for r in ratings), max(r.max_current_a for r in ratings)
            )
        return self._ratings.get(connector_id, ConnectorRating())

    def rules(self) -> ProfileRules:
        return self._settings.rules()

    # --- the timer --------------------------------------------------------------------------

    async def run(self) -> None:
        """Load the stored profiles, then keep the limits current until cancelled."""
        await self._load()
        self._running = True
        try:
            while True:
                self._wake.clear()
                try:
                    delay = self._apply()
                except Exception:  # a bug here must not take the CSMS link down with it
                    log.exception("charging limits not applied; trying again in %s s", MAX_SLEEP_S)
                    delay = MAX_SLEEP_S
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._running = False

    def refresh(self) -> None:
        """Push changed limits now, and let the timer aim at the new next boundary."""
        self._apply()
        self._wake.set()

    def refresh_soon(self) -> None:
        """Push changed limits on the next loop iteration (see the module docstring)."""
        if self._running:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_soon(self._apply)

    def _relative_start(self, connector_id: int) -> tuple[str | None, dt.datetime | None]:
        tx = self._running_tx(connector_id)
        return (None, None) if tx is None else (tx.local_id, tx.started_at)

    def _running_tx(self, connector_id: int) -> Transaction | None:
        if connector_id == 0:
            return None
        tx = self._control.view(connector_id).transaction
        return tx if tx is not None and tx.running else None

    def limit_a(self, connector_id: int, at: dt.datetime) -> float | None:
        """The composite limit of ``connector_id`` at ``at`` in A (None: no profile limits)."""
        tx_key, started = self._relative_start(connector_id)
        return composite_limit_at(
            self.book.layers(connector_id, tx_key),
            at,
            phases=self.rating(connector_id).phases,
            relative_start=started,
        )

    def _apply(self) -> float:
        """Push every changed limit; seconds until the next boundary of any connector."""
        now = self._clock()
        boundaries = []
        for connector_id in self._control.connector_ids:
            limit = self.limit_a(connector_id, now)
            if connector_id not in self._pushed or self._pushed[connector_id] != limit:
                if limit is not None or connector_id in self._pushed:
                    log.info(
                        "connector %d: charging profile limit %s",
                        connector_id,
                        "none" if limit is None else f"{limit:.1f} A",
                    )
                    self._control.set_current_limit(connector_id, limit)
                self._pushed[connector_id] = limit
            tx_key, started = self._relative_start(connector_id)
            boundary = next_boundary(
                self.book.layers(connector_id, tx_key), now, relative_start=started
            )
            if boundary is not None:
                boundaries.append(boundary)
        if not boundaries:
            return MAX_SLEEP_S
        # a hair after the boundary, so that the new period is in force when we look
        return min(max((min(boundaries) - now).total_seconds() + 0.002, 0.001), MAX_SLEEP_S)

    # --- loading ----------------------------------------------------------------------------

    async def _load(self) -> None:
        try:
            stored = await self._store.load()
        except StorageError as exc:
            log.error("charging profiles not loaded, none apply: %s", exc)
            return
        broken = []
        same_level = self.rules().replace_same_level
        for row in stored:
            try:
                profile = self._parse(
                    row.body, row.connector_id, row.installed_at, None, key=row.key
                )
            except ProfileRejected as exc:
                log.warning("stored charging profile %s dropped: %s", row.key, exc)
                broken.append(row.key)
                continue
            bound = dataclasses.replace(
                profile, transaction_key=row.transaction_key, id_tag=row.id_tag
            )
            self.book.put(bound, same_level)
        if broken:
            await self._forget(broken)
        log.info("%d charging profile(s) loaded", len(self.book))

    # --- CSMS requests ----------------------------------------------------------------------

    async def install(self, connector_id: int, body: Mapping[str, Any]) -> bool:
        """SetChargingProfile: True when the profile is stored and in force."""
        try:
            if connector_id != 0 and connector_id not in self._control.connector_ids:
                raise ProfileRejected(f"no connector {connector_id}")
            profile = self._parse(
                body, connector_id, self._clock(), self.rules(), key=uuid.uuid4().hex
            )
            if profile.purpose is Purpose.TX:
                profile = self._for_running_transaction(profile, profile.csms_transaction_id)
        except ProfileRejected as exc:
            log.info("SetChargingProfile on connector %d rejected: %s", connector_id, exc)
            return False
        return await self._put(profile, "SetChargingProfile")

    def _for_running_transaction(
        self, profile: InstalledProfile, transaction_id: object
    ) -> InstalledProfile:
        assert profile.connector_id is not None
        tx = self._running_tx(profile.connector_id)
        if tx is None:
            raise ProfileRejected(f"no transaction runs on connector {profile.connector_id}")
        running_id = self._transaction_id_of(tx)
        if transaction_id is not None and transaction_id != running_id:
            raise ProfileRejected(
                f"transaction {transaction_id} is not the one on connector "
                f"{profile.connector_id} ({running_id})"
            )
        return dataclasses.replace(profile, transaction_key=tx.local_id)

    async def _put(self, profile: InstalledProfile, action: str) -> bool:
        rules = self.rules()
        async with self._lock:
            clashing = [] if rules.replace_same_level else self.book.clashing(profile)
            if clashing:
                log.info(
                    "%s rejected: profile %d has stack level %d of %s there",
                    action,
                    clashing[0].profile_id,
                    profile.stack_level,
                    profile.purpose,
                )
                return False
            replaced = self.book.replaced_by(profile, rules.replace_same_level)
            installed = len(self.book) - len(replaced) + 1
            limit = rules.max_installed
            if installed > limit:
                log.info(
                    "%s rejected: %d profiles installed, MaxChargingProfilesInstalled is %d",
                    action,
                    len(self.book),
                    limit,
                )
                return False
            try:
                await self._store.install(_stored(profile), [p.key for p in replaced])
            except StorageError as exc:
                log.error("%s rejected: the profile could not be stored: %s", action, exc)
                return False
            self.book.put(profile, rules.replace_same_level)
        log.info(
            "charging profile %d installed: %s, stack level %d, connector %s",
            profile.profile_id,
            profile.purpose,
            profile.stack_level,
            profile.connector_id if profile.connector_id is not None else "of the remote start",
        )
        self.refresh()
        return True

    async def clear(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: Purpose | None,
        stack_level: int | None,
    ) -> bool:
        """ClearChargingProfile: True when something matched (and is gone)."""
        async with self._lock:
            found = self.book.matching(profile_id, connector_id, purpose, stack_level)
            if not found:
                return False
            keys = [p.key for p in found]
            self.book.remove(keys)
            try:
                await self._store.delete(keys)
            except StorageError as exc:
                log.error("cleared charging profiles may come back after a restart: %s", exc)
        log.info("%d charging profile(s) cleared", len(found))
        self.refresh()
        return True

    async def hold_for_remote_start(
        self, connector_id: int | None, id_tag: str, body: Mapping[str, Any]
    ) -> InstalledProfile | None:
        """RemoteStartTransaction's chargingProfile, installed before the start is asked so
        the session never begins without it; None when it cannot be followed (the remote
        start is then Rejected). It waits for the transaction of ``id_tag`` on
        ``connector_id`` (None on a charger with several connectors: the one the start
        picks)."""
        ids = self._control.connector_ids
        target = connector_id if connector_id is not None else (ids[0] if len(ids) == 1 else None)
        try:
            profile = self._parse(body, target, self._clock(), self.rules(), key=uuid.uuid4().hex)
            if profile.purpose is not Purpose.TX:
                raise ProfileRejected(f"a {profile.purpose} in RemoteStartTransaction")
            if target is not None and self._running_tx(target) is not None:
                # it would replace the running session's TxProfile at its stack level
                raise ProfileRejected(f"a transaction runs on connector {target}")
        except ProfileRejected as exc:
            log.info("RemoteStartTransaction rejected: its charging profile: %s", exc)
            return None
        if profile.csms_transaction_id is not None:
            log.info("RemoteStartTransaction: the profile's transactionId is ignored")
        profile = dataclasses.replace(profile, id_tag=id_tag)
        return profile if await self._put(profile, "RemoteStartTransaction") else None

    def release(self, profile: InstalledProfile) -> None:
        """The remote start ``profile`` was held for was refused: the profile goes."""
        self._drop([profile.key])
        self.refresh()

    def composite(
        self, connector_id: int, duration_s: int, unit: RateUnit | None
    ) -> CompositeAnswer | None:
        """GetCompositeSchedule from the next whole second; None for an unknown connector.

        The schedule is the station's effective limit, as OCPP 1.6 (section 5.7) and 2.0.1
        (K08) allow: "the result of the calculation of all active schedules and possible
        local limits present in the Charge Point". A connector's profiles are capped by its
        local limits in force now (:attr:`ConnectorView.local_limit_a`: the fuse or circuit
        rule, solar, the user's limit), over the whole requested duration: nothing local is
        known of the future (it follows the house's load), and both versions call the
        answer indicative, liable to change "due to external causes (for instance, local
        balancing based on grid connection capacity)". A local limit below 6 A is reported
        as it is, as a profile's would be. Connector 0 (the whole station) reports its
        profiles alone: the local limits are per connector.
        """
        if connector_id != 0 and connector_id not in self._control.connector_ids:
            return None
        if duration_s <= 0:
            return None
        now = self._clock()
        start = now.replace(microsecond=0)
        if start < now:
            start += dt.timedelta(seconds=1)  # from the next whole second: offsets are integers
        tx_key, started = self._relative_start(connector_id)
        rating = self.rating(connector_id)
        cap_a = rating.max_current_a
        if connector_id != 0:
            local_a = self._control.view(connector_id).local_limit_a
            cap_a = cap_a if local_a is None else min(cap_a, local_a)
        periods = composite_schedule(
            self.book.layers(connector_id, tx_key),
            start,
            duration_s,
            phases=rating.phases,
            relative_start=started or start,
            cap_a=cap_a,
        )
        unit = unit or RateUnit.AMPS
        return CompositeAnswer(
            connector_id,
            start,
            duration_s,
            unit,
            tuple(
                (
                    p.start_s,
                    _tenth(from_amps(p.limit_a or 0.0, unit, p.phases or rating.phases)),
                    p.phases,
                )
                for p in periods
            ),
        )

    # --- transactions -----------------------------------------------------------------------

    def transaction_started(self, tx: Transaction) -> None:
        """A waiting remote-start TxProfile meets its transaction; Relative schedules now
        count from its start."""
        for profile in self.book:
            if (
                profile.purpose is Purpose.TX
                and profile.transaction_key is None
                and profile.connector_id in (None, tx.connector_id)
                and (profile.id_tag or "").casefold() == tx.id_tag.casefold()
            ):
                bound = self.book.bind(profile.key, tx.connector_id, tx.local_id)
                if bound is not None:
                    self._spawn(
                        self._store.bind(profile.key, tx.connector_id, tx.local_id),
                        f"csms-profile-bind-{profile.key}",
                    )
        self.refresh_soon()

    def transaction_stopped(self, tx: Transaction) -> None:
        """A TxProfile ends with its transaction (1.6 section 3.13.4)."""
        self._drop(
            [
                p.key
                for p in self.book
                if p.purpose is Purpose.TX
                and p.connector_id == tx.connector_id
                and p.transaction_key is not None
            ]
        )
        self.refresh_soon()

    def connector_idle(self, connector_id: int) -> None:
        """The connector is Available without a transaction: a remote start's TxProfile whose
        session never began goes (one waiting for any connector once ConnectionTimeOut has
        passed)."""
        timeout = dt.timedelta(seconds=self._settings.connection_timeout_s)
        now = self._clock()
        gone = [
            p.key
            for p in self.book
            if p.purpose is Purpose.TX
            and (
                p.connector_id == connector_id
                or (p.connector_id is None and now - p.installed_at >= timeout)
            )
        ]
        if gone:
            self._drop(gone)
            self.refresh_soon()

    def _drop(self, keys: list[str]) -> None:
        if keys:
            self.book.remove(keys)
            self._spawn(self._forget(keys), "csms-profile-delete")

    async def _forget(self, keys: list[str]) -> None:
        try:
            await self._store.delete(keys)
        except StorageError as exc:
            log.error("charging profiles no longer in force stay on disk: %s", exc)


def _stored(profile: InstalledProfile) -> StoredProfile:
    return StoredProfile(
        profile.key,
        profile.connector_id,
        profile.transaction_key,
        profile.id_tag,
        profile.body,
        profile.installed_at,
        profile.profile_id,
    )


def _tenth(value: float) -> float:
    """A limit on the wire (multipleOf 0.1), rounded down so that it never promises more."""
    return math.floor(value * 10 + 1e-9) / 10
