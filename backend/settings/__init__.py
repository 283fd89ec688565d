"""Runtime settings stored in the database with typed defaults."""
