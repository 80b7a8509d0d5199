"""The SQL models (one a file, named like dbt models), shipped inside the package as
`migration_pipeline.dbt_like_sql` (setup.py maps this folder there); read by
`migration_pipeline.lib.staging.sql`."""
