"""Webhooks: signed, at-least-once notifications of meeting events to applications.

    events.py     the event types and their JSON body
    keys.py       every Redis key of the outbox (partition streams, counters, leases)
    outbox.py     the MC records each event where it happens (`EventOutbox`, lua/emit.lua)
    delivery.py   the GCs deliver them: partition leases, consumer groups, retries
    signature.py  `Darktower-Signature`: signing and verifying (5 min replay window)
    receiver.py   a verifying receiver app (`darktower webhook-receiver`, cli.py)
    metrics.py    the GC's delivery metrics

docs/webhooks.md describes the format, the guarantees and the settings.
"""
