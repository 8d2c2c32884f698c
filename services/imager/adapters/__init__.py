"""Real implementations of the imager's ports."""
