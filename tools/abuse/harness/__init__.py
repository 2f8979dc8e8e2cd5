"""What every attack shares: the berth processes, the wire helpers, the well-behaved client
and the report."""
