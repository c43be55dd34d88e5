"""Rules and helpers that the MC, the GC and the tools share, owned by none of them.

A service never imports another service's internals (`darktower.gc` never imports
`darktower.mc`, nor the other way round); what both need lives here, once:

* `errors`: `InvalidField`, the one error a shared rule raises, and how a service turns it
  into its own error at its edge;
* `ids`: the id rule (meeting, MC, MH, GC ids) and the host-derived default id;
* `endpoints`: the rule for an `http(s)://` endpoint an MC or MH advertises;
* `limits`: limits both sides of a message agree on (display names, meeting loads);
* `names`: the user id rule and the display name rule (NFC, no invisible characters);
* `health`: which health states may take new work;
* `backoff`: the registration retry schedule (MC and mh-sim);
* `clock`: the current time, as UTC datetimes and epoch milliseconds.
"""
