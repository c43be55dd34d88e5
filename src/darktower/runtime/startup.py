"""What the MC and the GC load and check the same way at start, each failure a `StartupError`
(one line, exit 2): the service's TLS files and its own service key."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from darktower.auth.keys import ServiceKey, load_service_key
from darktower.auth.service_types import ServiceType
from darktower.runtime.serving import StartupError
from darktower.runtime.tls import TlsConfig, TlsError, load_tls

__all__ = ["TlsSettings", "load_own_key", "load_service_tls"]


class TlsSettings(Protocol):
    """The TLS fields both services' settings have (`MC_TLS_*`, `GC_TLS_*`)."""

    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_file(self) -> Path | None: ...
    @property
    def tls_ca_file(self) -> Path | None: ...
    @property
    def tls_require_client_cert(self) -> bool: ...


def load_service_tls(settings: TlsSettings, *, prefix: str) -> TlsConfig:
    """The service's TLS files, read and checked once; `prefix` ("MC"/"GC") names them."""
    try:
        return load_tls(
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_ca_file,
            require_client_cert=settings.tls_require_client_cert,
            prefix=f"{prefix}_TLS",
        )
    except TlsError as exc:
        raise StartupError(str(exc)) from None


def load_own_key(
    path: Path, *, instance_id: str, service_type: ServiceType, prefix: str
) -> ServiceKey:
    """The service's own key; a key bound to another instance (or service) is refused."""
    key = load_service_key(path)
    if key.instance_id is not None and (
        key.instance_id != instance_id or key.service_type is not service_type
    ):
        raise StartupError(
            f"{prefix}_SERVICE_KEY_FILE is bound to {key.instance_id!r}, not to this "
            f"{prefix} ({prefix}_ID={instance_id})"
        )
    return key
