"""What every service shares: settings, database, sandbox clock, identifiers, caller identity, errors, server."""
