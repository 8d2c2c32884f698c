"""auth: HMAC signatures of bodies and short-lived signed tokens (standard library)."""
