"""Real implementations of the reporter's ports."""
