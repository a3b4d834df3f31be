"""The Textual app. Imports the core and the client (which reach the runner), never the runner
itself, the worker or TensorFlow; its data layer (store, curves, formatting, toml_edit) imports no
Textual (``pyproject.toml`` ``[tool.importlinter]``)."""
