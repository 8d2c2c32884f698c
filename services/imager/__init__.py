"""Imager: builds, proves and pushes one small image per service and platform (issue 5)."""
