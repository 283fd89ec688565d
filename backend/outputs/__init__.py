"""Client outputs: M3U playlists, the XMLTV guide file and HDHomeRun emulation, behind stream keys."""
