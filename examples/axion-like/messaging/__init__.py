"""messaging: envelopes and an in-process topic bus (the services' outbox before a real broker)."""
