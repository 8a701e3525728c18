"""Postgres: typed models, sessions, repositories, migrations runner and embedded services.

* :mod:`db.models` — the schema (``Base``, ``User``, ``Guild``, ``Job``, ``Image``, ...).
* :mod:`db.session` — ``create_engine(url)`` and ``create_session_factory(engine)``.
* :mod:`db.repositories` — keyword-only async functions (``create_job``, ``claim_job``, ...).
* :mod:`db.migrate` — run the alembic migrations from code.
* :mod:`db.embedded` — ``open_services(settings)``: the embedded Postgres and Redis when no
  URL is configured.
"""
