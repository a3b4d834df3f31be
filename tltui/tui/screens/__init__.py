"""Screens of the app: runs (home), run (live), compare, help and small dialogs."""
