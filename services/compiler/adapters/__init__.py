"""Real implementations of the compiler's ports."""
