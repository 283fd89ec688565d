"""Operations endpoints: health, version, metrics and the API docs page."""
