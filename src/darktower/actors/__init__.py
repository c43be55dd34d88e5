"""A small actor runtime: a mailbox and a task per actor, children supervised by their parent."""

from darktower.actors.runtime import Actor, ActorStopped

__all__ = ["Actor", "ActorStopped"]
