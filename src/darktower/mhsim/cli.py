"""`darktower mh-sim`: run one simulated media handler against a GC."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.errors import AuthError
from darktower.auth.keys import load_service_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.runtime.logs import LogFormat, configure_logging
from darktower.runtime.serving import StartupError
from darktower.runtime.tls import TlsError, load_tls
from darktower.runtime.tracing_setup import configure_tracing

__all__ = ["mh_sim"]

log = logging.getLogger(__name__)


def mh_sim(
    key: Annotated[Path, typer.Option(help="The MH private key (darktower keys generate).")],
    gc: Annotated[str, typer.Option(help="The GC's gRPC endpoint.")] = "http://127.0.0.1:50051",
    id: Annotated[str, typer.Option("--id", help="Handler id.")] = "mh-sim-1",
    region: Annotated[str, typer.Option(help="Region.")] = "local",
    zone: Annotated[str, typer.Option(help="Failure zone.")] = "zone-a",
    max_streams: Annotated[int, typer.Option(min=1)] = 1000,
    target_load: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate presented to the GC (mTLS).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key.")] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA that verifies an https:// GC (default: system roots).")
    ] = None,
    log_format: Annotated[
        LogFormat,
        typer.Option(envvar="MH_LOG_FORMAT", help="text, or json: one JSON object per line."),
    ] = LogFormat.TEXT,
) -> None:
    """Register a simulated MH with a GC and send periodic load reports until stopped."""
    from darktower.mhsim.simulator import MhConfig, MhSimulator

    configure_logging("INFO", log_format=log_format, service="darktower-mh-sim", instance_id=id)
    service_type, scope = SERVICE_PROFILES["mh"]
    try:
        signing = load_service_key(key)
        if signing.instance_id is not None and (
            signing.instance_id != id or signing.service_type is not service_type
        ):
            typer.echo(
                f"darktower mh-sim: {key} is bound to {signing.instance_id!r}, not to --id {id}",
                err=True,
            )
            raise typer.Exit(2)
        # `sub` = the handler id (what a bound key vouches for), `aud` = the fleet's GCs.
        tokens = ServiceTokenProvider(
            signing.private_key,
            service_type=service_type,
            scope=scope,
            issuer=id,
            subject=id,
            audience=GC_AUDIENCE,
        )
        tls = load_tls(tls_cert, tls_key, tls_ca, prefix="--tls")
    except (AuthError, TlsError) as exc:
        typer.echo(f"darktower mh-sim: {exc}", err=True)
        raise typer.Exit(2) from None
    config = MhConfig(
        handler_id=id,
        region=region,
        zone=zone,
        webtransport_endpoint=f"https://{id}.{zone}.local:4433",
        grpc_endpoint=f"{tls.scheme}://{id}.{zone}.local:50053",
        max_streams=max_streams,
        target_load=target_load,
    )

    async def main() -> None:
        simulator = MhSimulator(gc, config, tokens, tls=tls)
        runner = asyncio.ensure_future(simulator.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.cancel)
        try:
            await runner
        except asyncio.CancelledError:
            log.info("MH %s stopped", id)
        finally:
            await simulator.aclose()

    try:
        tracing = configure_tracing("darktower-mh-sim", id)
    except StartupError as exc:
        typer.echo(f"darktower mh-sim: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        asyncio.run(main())
    finally:
        tracing.shutdown()
