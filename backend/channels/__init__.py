"""The lineup: channels, their ordered sources, tags, guide mapping, logos, lineup import/export."""
