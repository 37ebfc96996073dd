"""Operations: active streams, throughput meters, health, provider tests, metrics.

`Ops` (altmount.ops.service) bundles them for one server; the web layer
(`altmount.web.opsapi`, `altmount.web.metrics`, WebDAV) reads and feeds it.
"""

from altmount.ops.health import HealthMonitor
from altmount.ops.healthstore import FileHealth, HealthStore
from altmount.ops.meters import DurationMeter, RateMeter, human_rate
from altmount.ops.service import Ops
from altmount.ops.streams import StreamHandle, StreamRegistry

__all__ = [
    "Ops",
    "HealthMonitor",
    "FileHealth",
    "HealthStore",
    "RateMeter",
    "DurationMeter",
    "human_rate",
    "StreamHandle",
    "StreamRegistry",
]
