"""Attacks as tests: each performs one attack from docs/security.md on the real parts and asserts
the concrete outcome (refused, nothing leaked, legitimate work unharmed)."""
