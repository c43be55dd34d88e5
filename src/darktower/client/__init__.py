"""A meeting participant outside the browser.

`darktower.client.session.ClientSession` speaks the protocol and reconnects;
`darktower.client.cli` is `darktower client`, a terminal that prints the roster as it changes.
Nothing is imported here, so that `darktower`'s other commands do not load the WebSocket stack.
"""

from __future__ import annotations

__all__: list[str] = []
