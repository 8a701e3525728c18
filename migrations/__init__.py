"""Alembic migrations of the Imaginarium schema (shipped with the package so it can migrate itself).

Run them with ``imaginarium migrate`` or :func:`db.migrate.upgrade`; ``alembic -c
migrations/alembic.ini ...`` works too from a checkout (it reads ``DATABASE_URL``).
"""
