-- The Prefect server keeps its own database beside the engine's store (both use Alembic).
CREATE DATABASE prefect OWNER eras;
