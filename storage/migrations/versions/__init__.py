"""The revisions of dynl2's tables, oldest first: ``v0001_baseline``, ``v0002_...``.

A new revision is written by hand (there is no alembic.ini to autogenerate from): copy the
newest file, give it the next ``revision`` and the previous one as ``down_revision``, change
the models in :mod:`storage.schema` to match its upgrade, bump ``SCHEMA_VERSION`` there and
add the pair to ``storage.migrations.SCHEMA_VERSIONS``. Name constraints as the naming
convention of ``storage.schema.Base.metadata`` does, and use ``op.batch_alter_table`` for any
change SQLite cannot make in place. tests/storage/test_migrations.py then checks that an
upgraded store and a new one have the same tables, on SQLite and PostgreSQL.

A revision is frozen once released: it spells out the tables as they were, never imports the
models (which move on).
"""
