"""Widgets that render data handed to them (run table, metric charts, ...)."""
