"""Who a service is: `ServiceType` (the `service_type` claim) and the CLI short names.

A module of its own because both the key files (`keys`, a file bound to "mc" is bound to
`ServiceType.MEETING_CONTROLLER`) and the tokens (`tokens`) need it, and `tokens` imports `keys`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SERVICE_NAMES", "ServiceType"]


class ServiceType(StrEnum):
    """The kind of service a token was minted for (claim `service_type`)."""

    GLOBAL_CONTROLLER = "global-controller"
    MEETING_CONTROLLER = "meeting-controller"
    MEDIA_HANDLER = "media-handler"


# CLI and key-file short name → service type.
SERVICE_NAMES: dict[str, ServiceType] = {
    "gc": ServiceType.GLOBAL_CONTROLLER,
    "mc": ServiceType.MEETING_CONTROLLER,
    "mh": ServiceType.MEDIA_HANDLER,
}
