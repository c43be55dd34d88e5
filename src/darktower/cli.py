"""The one `darktower` command (docs/reference.md); each subcommand lives with its subsystem."""

from __future__ import annotations

import typer

from darktower.auth.access_cli import access_token, api_key_app
from darktower.auth.certs_cli import certs_app
from darktower.auth.cli import keys_app, token
from darktower.client.cli import client
from darktower.dev.cli import dev
from darktower.dev.roll import roll
from darktower.gc.cli import drain, gc, join, status
from darktower.gc.meetings_cli import meetings_app
from darktower.mc.call import assign
from darktower.mc.cli import mc
from darktower.mh.cli import mh
from darktower.mhsim.cli import mh_sim
from darktower.sim.cli import sim
from darktower.webhooks.cli import webhook_receiver

__all__ = ["app", "main"]

app = typer.Typer(
    name="darktower",
    help="darktower: the meeting control plane.",
    no_args_is_help=True,
    # Tracebacks with locals could print a loaded key; errors users can fix are caught anyway.
    pretty_exceptions_show_locals=False,
)

app.add_typer(keys_app, name="keys")
app.add_typer(certs_app, name="certs")
app.command("token")(token)
app.add_typer(api_key_app, name="api-key")
app.command("access-token")(access_token)

app.command("mc")(mc)
app.command("assign")(assign)
app.command("dev")(dev)
app.command("roll")(roll)
app.command("gc")(gc)
app.command("join")(join)
app.command("status")(status)
app.command("drain")(drain)
app.add_typer(meetings_app, name="meetings")
app.command("mh-sim")(mh_sim)
app.command("mh")(mh)
app.command("client")(client)
app.command("sim")(sim)
app.command("webhook-receiver")(webhook_receiver)
# Next: `gc`, `dev`, `join`, `status`.


def main() -> None:
    """Console-script entry point (`darktower = "darktower.cli:main"`)."""
    app(prog_name="darktower")
