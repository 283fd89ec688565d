"""The authenticated reverse proxy to TVHeadend at /tic-tvh/ and the stream-key stream routes."""
