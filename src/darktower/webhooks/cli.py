"""`darktower webhook-receiver`: run the verifying receiver of `receiver.py` until stopped."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from darktower.auth.api_keys import ApiKeyError, load_api_key_file
from darktower.runtime.logs import configure_logging
from darktower.runtime.serving import (
    EmbeddedUvicorn,
    StartupError,
    listen_socket,
    serve_until_signalled,
)
from darktower.webhooks.receiver import MAX_BODY_BYTES, create_receiver_app

__all__ = ["webhook_receiver"]


def webhook_receiver(
    key_file: Annotated[
        Path, typer.Option(help="The API key file the GC signs with (GC_WEBHOOK_KEY_FILE).")
    ],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8099,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Larger bodies get 413.")] = (
        MAX_BODY_BYTES
    ),
) -> None:
    """Receive darktower webhooks: verify each signature, print each event as a JSON line."""
    configure_logging("WARNING")
    try:
        key = load_api_key_file(key_file)
    except ApiKeyError as exc:
        typer.echo(f"darktower webhook-receiver: {exc}", err=True)
        raise typer.Exit(2) from None
    app = create_receiver_app(key.secret, max_body_bytes=max_body_bytes)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def main() -> None:
        sock = listen_socket(bind, "webhook receiver")
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        server = EmbeddedUvicorn(config)
        task: asyncio.Task[None] | None = None

        async def start() -> None:
            nonlocal task
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if task.done():
                    raise StartupError(f"cannot serve on {bind}")
                await asyncio.sleep(0.01)
            bound = sock.getsockname()[1]
            print(
                f"darktower webhook-receiver: listening on http://{host}:{bound}/ "
                f"(key {key.key_id})",
                file=sys.stderr,
                flush=True,
            )

        async def stop() -> None:
            server.should_exit = True
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)

        await serve_until_signalled(start, stop)

    try:
        asyncio.run(main())
    except StartupError as exc:
        typer.echo(f"darktower webhook-receiver: {exc}", err=True)
        raise typer.Exit(2) from None
