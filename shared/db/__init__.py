"""Storage: SQLAlchemy models, engine/session, migrations."""
