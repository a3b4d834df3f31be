"""tltui: a terminal experiment manager for transfer learning."""

__version__ = "0.1.0"
