"""The registers as gRPC services; each sub-package owns its tables, rules and servicer."""
