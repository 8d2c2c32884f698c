"""portal: the web service: HTML pages of the platform (Jinja2, tier `web`)."""
