"""darktower: the control plane of a video-conferencing platform.

Subsystems, one package each:

* `darktower.wire`      generated protobuf / gRPC stubs of `proto/dark_tower/internal.proto`
* `darktower.auth`      Ed25519 JWT service tokens and the gRPC interceptor that checks them
* `darktower.fencing`   meeting state in Redis behind fencing tokens (Lua scripts)
* `darktower.actors`    the small actor runtime (mailbox, task, supervision)
* `darktower.mc`        the Meeting Controller service
* `darktower.embedded`  real servers started locally (Redis) for the embedded default and tests
"""

__version__ = "0.1.0"
