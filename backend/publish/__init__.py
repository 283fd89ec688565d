"""Configure TVHeadend and publish TIC's lineup into it as a reconcile (plan, preview, apply, drift)."""
