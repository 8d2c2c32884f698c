"""Server-rendered dashboard (Jinja2, no build step): builds list, build page, diff view."""
