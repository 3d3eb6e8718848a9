"""Planning: pure functions from (model, host, request) to a `Plan`; no I/O."""
