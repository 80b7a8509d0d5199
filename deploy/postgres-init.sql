-- Runs once, when the postgres service initializes its volume: a database for the pipeline's
-- staging tables and ledger (MIGRATION_STAGING_URL in .env), beside the Dagster instance's own.
CREATE DATABASE migration_staging;
