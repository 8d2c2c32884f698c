"""webhook: receives push notifications over HTTP (standard library only)."""
