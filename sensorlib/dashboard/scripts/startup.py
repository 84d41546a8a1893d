"""Run once when the dashboard server starts (``panel serve --setup``): start the shared
Kafka feed, so the back-fill is done and the groups' lag is current before any page opens,
and the Ops tab's scraper, so its rates and lag history are there at the first look."""

from sensorlib.config import Settings
from sensorlib.dashboard.feed import shared_feed
from sensorlib.dashboard.ops_tab import shared_ops

settings = Settings.from_env()
shared_feed(settings)
shared_ops(settings)
