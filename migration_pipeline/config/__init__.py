"""Versioned configuration files shipped with the package (content rules, mapping tables)."""
