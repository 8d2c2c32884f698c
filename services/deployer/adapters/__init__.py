"""Real implementations of the deployer's ports."""
