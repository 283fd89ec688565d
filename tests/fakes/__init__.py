"""Tiny real servers that stand in for TVHeadend and IPTV providers in tests."""
