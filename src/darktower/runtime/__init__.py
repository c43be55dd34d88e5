"""What every darktower service process runs on, whatever the service: starting and stopping
servers (`serving`), the `darktower mc`/`gc` command runner (`service_cli`), the secret-redacting
log setup (`logs`), gRPC channels (`grpc_channels`), the one gRPC error edge every servicer's
RPCs run through (`grpc_edge`), the Redis client factory for standalone, Sentinel and Cluster
URLs (`redis_connect`), the background-task supervisor (`supervisor`) and the settings' help
text (`settings_doc`)."""
