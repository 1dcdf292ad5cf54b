"""The `eras` command line."""
