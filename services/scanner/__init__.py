"""The scanner: Trivy or Harbor vulnerability scans, a secret gate on every image, a policy gate
per package, and the four audit modes (deps, config, secrets, image)."""
