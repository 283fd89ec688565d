"""The Jinja admin pages."""
