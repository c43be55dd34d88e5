"""`darktower client MEETING_ID --name NAME`: join a meeting from a terminal, print the roster,
then one line per change as it happens. Ctrl-C (or SIGTERM) leaves the meeting and exits 0.

Exit codes: 0 after leaving (or when the meeting ended or removed us), 1 when the join was
refused or the session could not be kept, 2 when the meeting id is invalid (nothing is sent)
or the GC cannot be reached.

Names and ids come from other participants: every string is printed as plain text (no rich
markup), with control and bidirectional-control characters replaced, so that nobody's name
can move the cursor, recolour the terminal or reorder the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import time
import unicodedata
from collections.abc import Mapping
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from darktower.cli_support import (
    UNREACHABLE_HINT,
    AccessTokenOpt,
    CaFile,
    GcUrl,
    access_token_for,
    check_meeting_id,
    resolve_gc_url,
    tls_context,
)
from darktower.signaling.protocol import (
    ErrorMsg,
    Muted,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
)

__all__ = ["client", "describe", "safe"]

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2


def safe(value: str, limit: int = 120) -> str:
    """`value` fit for one terminal line: control characters replaced, at most `limit`."""
    cleaned = "".join(
        "\ufffd" if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI else ch
        for ch in value[:limit]
    )
    return cleaned + ("…" if len(value) > limit else "")


def _name(p: Participant | None, participant_id: str) -> str:
    return safe(p.display_name) if p is not None else safe(participant_id)


def _flags(p: Participant, me: str | None, host: str | None) -> str:
    flags = []
    if p.participant_id == me:
        flags.append("you")
    if p.participant_id == host:
        flags.append("host")
    if p.host_muted:
        flags.append("muted by host")
    elif p.muted:
        flags.append("muted")
    if not p.connected:
        flags.append("disconnected")
    return f" ({', '.join(flags)})" if flags else ""


def roster_lines(roster: Mapping[str, Participant], me: str | None, host: str | None) -> list[str]:
    """The roster, one line per participant, host first then by name."""
    ordered = sorted(
        roster.values(),
        key=lambda p: (p.participant_id != host, p.display_name.casefold(), p.participant_id),
    )
    return [f"  {safe(p.display_name)}{_flags(p, me, host)}" for p in ordered]


def describe(
    event: ParticipantJoined | ParticipantLeft | ParticipantUpdated | Muted | ErrorMsg,
    before: Mapping[str, Participant],
) -> str | None:
    """One line for a roster change, given the roster before it; None when nothing shows."""
    if isinstance(event, ParticipantJoined):
        return f"+ {_name(event.participant, '')} joined"
    if isinstance(event, ParticipantLeft):
        who = _name(before.get(event.participant_id), event.participant_id)
        return f"- {who} left ({event.reason.value})"
    if isinstance(event, ParticipantUpdated):
        new, old = event.participant, before.get(event.participant.participant_id)
        name = _name(new, "")
        changes = []
        if old is None or old.muted != new.muted:
            changes.append("muted" if new.muted else "unmuted")
        if old is not None and old.host_muted != new.host_muted:
            changes.append("muted by the host" if new.host_muted else "unmuted by the host")
        if old is None or old.connected != new.connected:
            changes.append("reconnected" if new.connected else "disconnected")
        if old is not None and old.display_name != new.display_name:
            changes.append(f"was {safe(old.display_name)}")
        return f"* {name} " + ", ".join(changes) if changes else None
    if isinstance(event, Muted):
        name = _name(before.get(event.participant_id), event.participant_id)
        by = _name(before.get(event.by), event.by)
        return f"* {name} {'muted' if event.muted else 'unmuted'} by {by}"
    return f"! {event.code.value}: {safe(event.message)}"


class _Printer:
    def __init__(self, console: Console) -> None:
        self.console = console

    def line(self, text: str, style: str = "") -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(Text.assemble((stamp + " ", "dim"), (text, style)), soft_wrap=True)


async def _run(
    gc_url: str,
    meeting_id: str,
    name: str,
    user_id: str | None,
    console: Console,
    ssl_context: ssl.SSLContext,
    access_token: str | None = None,
) -> int:
    from darktower.client.session import (
        ClientSession,
        Ended,
        Joined,
        JoinRefused,
        Reconnecting,
        Redirected,
    )

    out = _Printer(console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session = ClientSession(
        gc_url,
        meeting_id,
        display_name=name,
        user_id=user_id,
        access_token=access_token,
        ssl_context=ssl_context,
    )
    known: dict[str, Participant] = {}
    moving: list[Redirected] = []  # a redirect being followed (one line once back in)

    async def show() -> None:
        async for event in session.events():
            if isinstance(event, Redirected):
                moving.append(event)
            elif isinstance(event, Joined) and moving and event.kind == "reconnected":
                moving.clear()
                out.line(
                    f"~ the meeting moved to {safe(event.mc_id)} (its MC drains); "
                    f"still {safe(event.answer.participant_id)}",
                    "yellow",
                )
            elif isinstance(event, Joined):
                moving.clear()
                how = {"joined": "joined", "reconnected": "back in", "rejoined": "rejoined"}
                out.line(
                    f"{how[event.kind]} {safe(meeting_id)} on {safe(event.mc_id)} as "
                    f"{safe(name)} ({safe(event.answer.participant_id)}); "
                    f"{len(event.answer.roster)} in the meeting:",
                    "bold",
                )
                for text in roster_lines(session.roster, session.participant_id, session.host_id):
                    out.line(text)
            elif isinstance(event, Reconnecting):
                out.line(f"~ {safe(event.why)}: reconnecting (attempt {event.attempt})", "yellow")
            elif isinstance(event, Ended):
                detail = f": {safe(event.detail)}" if event.detail else ""
                out.line(f"out of the meeting ({event.reason}){detail}", "bold")
            else:
                change = describe(event, known)
                if change is not None:
                    out.line(change, "red" if isinstance(event, ErrorMsg) else "")
            known.clear()
            known.update(session.roster)

    try:
        try:
            await session.join()
        except JoinRefused as exc:
            out.line(f"cannot join: {safe(str(exc), 400)}", "red")
            if exc.code != "gc_unreachable":
                return EXIT_REFUSED
            out.line(UNREACHABLE_HINT)
            return EXIT_UNREACHABLE
        printer = asyncio.create_task(show())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({printer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not printer.done():
            await session.leave()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(printer, 5)
        stopper.cancel()
        printer.cancel()
        await asyncio.gather(printer, stopper, return_exceptions=True)
        ended = session.ended
        return EXIT_REFUSED if ended is not None and ended.reason == "failed" else EXIT_OK
    finally:
        await session.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def client(
    meeting_id: Annotated[str, typer.Argument(help="The meeting to join (placed if needed).")],
    name: Annotated[str, typer.Option("--name", help="Your display name in the meeting.")],
    gc_url: GcUrl = None,
    user_id: Annotated[
        str | None,
        typer.Option("--user-id", help="Join as this user id (default: one the GC makes up)."),
    ] = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """Join a meeting from the terminal; print the roster and every change. Ctrl-C leaves.
    The join carries --token, else one minted with the dev fleet's API key (for --user-id,
    named --name), else none (a guest)."""
    check_meeting_id(meeting_id)  # before any request: the id goes into the GC's URL path
    console = Console(highlight=False, markup=False, emoji=False)
    verify = tls_context(ca_file)
    base = resolve_gc_url(gc_url)
    access = access_token_for(token, base, meeting_id=meeting_id, identity=user_id, name=name)
    code = asyncio.run(_run(base, meeting_id, name, user_id, console, verify, access))
    raise typer.Exit(code)
