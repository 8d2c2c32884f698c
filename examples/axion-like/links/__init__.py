"""links: the go service: short codes for long URLs."""
