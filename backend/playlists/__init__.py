"""Playlist sources: M3U playlists fetched from providers and imported as streams."""
