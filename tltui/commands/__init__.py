"""Subcommands of the ``tltui`` CLI, one module each."""
