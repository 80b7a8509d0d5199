"""Gladly as a source (and target): its API client, export archive, parser and staging.

Importing the package registers the one-time upgrade of a staging database made before the
canonical contract (pre_contract.py), so whichever process opens such a database first, with any
Gladly module loaded, upgrades it.
"""

from migration_pipeline.vendors.gladly import pre_contract as _pre_contract  # noqa: F401  (registers the upgrade)
