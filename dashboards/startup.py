"""Run once when the dashboard server starts (``panel serve --setup``): start the shared
Kafka feed, so the back-fill is done and the groups' lag is current before any page opens."""

from sensorlib.config import Settings
from sensorlib.dashboard.feed import shared_feed

shared_feed(Settings.from_env())
