"""Programs that use the sandbox only through its public gRPC API: school-admin client, SDK, CLI, load replayer."""
