"""TIC: TVHeadend IPTV Config."""

__version__ = "0.1.0"
