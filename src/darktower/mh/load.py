"""The load report of a Janus-backed MH, from the admin API's figures (a pure function)."""

from __future__ import annotations

from darktower.mh.janus_admin import LoadFigures
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["DEGRADED_FRACTION", "load_report"]

DEGRADED_FRACTION = 0.8


def load_report(
    handler_id: str,
    figures: LoadFigures | None,
    *,
    max_streams: int,
    max_bitrate_bps: float,
    cpu_percent: float,
    memory_percent: float,
) -> pb.MHLoadReportRequest:
    """`figures` None (Janus down or not answering): UNHEALTHY with no streams. Otherwise
    `current_streams` = publishers + subscriber handles (each a forwarded feed), the bandwidth
    share is the measured bitrate (from every handle's stats) against
    `max_bitrate_bps`, and the report is DEGRADED once either share reaches 80 %."""
    if figures is None:
        return pb.MHLoadReportRequest(
            handler_id=handler_id,
            current_streams=0,
            health=pb.UNHEALTHY,
            cpu_usage_percent=cpu_percent,
            memory_usage_percent=memory_percent,
            bandwidth_usage_percent=0.0,
        )
    streams = figures.publishers + figures.subscribers
    share = streams / max(1, max_streams)
    bandwidth = max(0, figures.bitrate_bps) / max(1.0, max_bitrate_bps)
    degraded = max(share, bandwidth) >= DEGRADED_FRACTION
    return pb.MHLoadReportRequest(
        handler_id=handler_id,
        current_streams=min(streams, 2**32 - 1),
        health=pb.DEGRADED if degraded else pb.HEALTHY,
        cpu_usage_percent=max(0.0, min(100.0, cpu_percent)),
        memory_usage_percent=max(0.0, min(100.0, memory_percent)),
        bandwidth_usage_percent=min(100.0, 100.0 * bandwidth),
    )
