"""api: the runtime service: the platform's core API, on tier `full` (every other factory's needs)."""
