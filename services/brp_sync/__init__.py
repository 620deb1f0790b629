"""BRP sync: the BRP change feed (simulated and ingested) and the agency's copy of each person."""
