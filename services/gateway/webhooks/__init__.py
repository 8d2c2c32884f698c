"""Webhook receivers: signature check, provider payload parsing, mapping refs to packages."""
