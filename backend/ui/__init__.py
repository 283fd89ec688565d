"""Cross-domain admin UI: dashboard, TV guide, first-run wizard, connection details."""
