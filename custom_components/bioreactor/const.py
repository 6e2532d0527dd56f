"""Constants for the Bioreactor integration."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

DOMAIN: Final = "bioreactor"
LOGGER = logging.getLogger(__package__)

DEFAULT_PORT: Final = 8420
# Entry data: the SHA-256 fingerprint of the agent's certificate pinned at pairing; absent
# for an agent that serves plain HTTP.
CONF_TLS_FINGERPRINT: Final = "tls_fingerprint"
SCAN_INTERVAL: Final = timedelta(seconds=10)
# Failed polls back off up to this interval instead of hammering a dead agent.
MAX_BACKOFF: Final = timedelta(minutes=5)
# Readings older than this when they arrive are an outage backlog: backfilled as statistics.
LIVE_WINDOW: Final = timedelta(minutes=10)
CLOCK_SKEW_LIMIT: Final = timedelta(seconds=60)
SENSOR_ERROR_REPAIR_AFTER: Final = timedelta(minutes=10)
# Pages pulled per drain run before yielding to the next poll.
DRAIN_PAGES_PER_RUN: Final = 50

ARCHIVE_DIR: Final = "bioreactor_archive"
EXPORT_DIR: Final = "bioreactor_exports"
