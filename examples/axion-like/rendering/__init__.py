"""rendering: HTML pages (Jinja2, tier `web`) and PNG charts (Pillow, tier `report`).

The package imports neither: `rendering.pages` needs only tier web, `rendering.charts` tier report."""
