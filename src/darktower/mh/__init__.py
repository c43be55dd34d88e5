"""`darktower mh`: a media handler in front of one Janus instance (README "Media").

* `janus_config` — the private configuration `darktower mh` writes for a Janus it starts;
* `janus_process` — starting, watching and restarting that Janus;
* `janus_admin` — the Janus admin API over HTTP (rooms, tokens, load figures);
* `rooms` — one VideoRoom per meeting and one token per participant (the Register decision);
* `load` — a load report from the admin API's figures (pure);
* `grpc_service` — MediaHandlerService for MCs;
* `server` — the process: Janus, the GC registration and reports, the gRPC server, health.
"""
