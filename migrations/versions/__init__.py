"""One alembic revision per schema change (a package only so that it ships in the wheel)."""
