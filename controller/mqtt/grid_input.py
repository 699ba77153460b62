"""Grid readings pushed over MQTT (``[grid_meter] source = "mqtt"``): a Home Assistant
automation or a smart-meter bridge publishes the house's current per phase, the charger's
fuse rule and solar modes take it as they take a polled meter's reading.

The payload is the local API's (``PUT /api/v1/grid``), JSON
``{"current_a": [L1, L2, L3]}``: the grid's signed current per phase (A, import positive,
null for a phase not measured), checked by the same parser
(:func:`controller.energy.grid.parse_pushed`). A reading is stamped when it arrives and
judged stale like a polled meter's (``[site] grid_max_age_s``): when the publisher, the
broker or the link to it falls silent, the connectors fall back to the safe current.

Ignored, counted and logged (rate-limited, :class:`~controller.mqtt.rejects.Rejects`): a
payload over :data:`MAX_PAYLOAD` bytes (never parsed), one that is not such JSON, and a
retained message (the broker replays it at each subscription, however old it is: taken,
an hours-old reading would pass for a fresh one). An ignored reading is a missing reading:
the newest good one ages as if the meter had said nothing. Loop thread only (aiomqtt hands
over messages on the loop; :meth:`GridFeed.push` wakes the fuse manager).
"""

from __future__ import annotations

import json
import logging

from controller.energy.grid import BadReading, GridFeed, parse_pushed
from controller.mqtt.rejects import Rejects

log = logging.getLogger(__name__)

#: The longest payload taken as a reading (bytes): three currents in JSON need ~60.
MAX_PAYLOAD = 256


class GridInput:
    """Takes the readings published on ``topic`` into ``feed``."""

    def __init__(self, feed: GridFeed, topic: str) -> None:
        self.feed = feed
        self.topic = topic
        self.rejects = Rejects(log, "a grid reading")
        self.readings = 0  # taken, for tests and diagnostics

    def take(self, payload: bytes, retained: bool) -> None:
        """One message on :attr:`topic`: pushed into the feed, or ignored; never raises."""
        if retained:
            self.rejects.note(self.topic, "a retained message (its age is unknown)")
            return
        if len(payload) > MAX_PAYLOAD:
            self.rejects.note(self.topic, f"{len(payload)} bytes (at most {MAX_PAYLOAD})")
            return
        try:
            current = parse_pushed(json.loads(payload))
        except BadReading as exc:
            self.rejects.note(self.topic, str(exc))
            return
        except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError)
            self.rejects.note(self.topic, 'not JSON {"current_a": [L1, L2, L3]}')
            return
        self.feed.push(current)
        self.readings += 1
