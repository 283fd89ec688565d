"""TVHeadend integration: the HTTP API client and the publishing of TIC's lineup into TVHeadend."""
