"""Users, sessions, API tokens, stream keys, CSRF and rate limits."""
