from tests.storage.fixtures import database, db_url, pg_scratch_url, sqlite_url

__all__ = ["database", "db_url", "pg_scratch_url", "sqlite_url"]
