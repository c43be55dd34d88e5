"""`darktower certs generate`: a local CA and a certificate for one service instance.

Errors a user can fix (a bad host list or name, an unreadable CA, a directory that cannot be
written) end the command with one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from darktower.auth.certs import CertFileError, generate_certs, parse_hosts

__all__ = ["certs_app"]

USAGE_ERROR_EXIT = 2

certs_app = typer.Typer(
    help="TLS certificates from a local CA, for gRPC, the GC's HTTPS API and the MC's WSS.",
    no_args_is_help=True,
)


@certs_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory for ca.crt/ca.key and NAME.*")],
    name: Annotated[str, typer.Option("--name", help="Certificate name, e.g. mc-1 or gc-1.")],
    hosts: Annotated[
        str,
        typer.Option("--hosts", help="Comma-separated host names and IPs the certificate names."),
    ] = "127.0.0.1,localhost",
) -> None:
    """Write DIR/NAME.crt and DIR/NAME.key (0600), signed by the CA in DIR (DIR/ca.crt and
    DIR/ca.key, 0600 — made when absent, reused when present). The certificate serves TLS and
    authenticates its holder as a client (mTLS); peers trust DIR/ca.crt."""
    try:
        issued = generate_certs(out, name, parse_hosts(hosts))
    except (ValueError, CertFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(USAGE_ERROR_EXIT) from None
    ca_note = "reused" if issued.ca_reused else "new"
    typer.echo(f"{issued.ca_cert} ({ca_note} CA; its key {issued.ca_key})")
    typer.echo(str(issued.cert))
    typer.echo(str(issued.key))
