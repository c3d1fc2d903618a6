"""Storing and fetching bundles: a local directory (default) or any OCI registry."""
