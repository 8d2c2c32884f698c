"""Real implementations of the scanner's ports: the trivy CLI and Harbor's REST API."""
