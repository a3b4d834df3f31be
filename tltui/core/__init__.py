"""The shared core: what every process (CLI, app, runner, worker) agrees on.

Presets and their schema, the backbone catalog and stages, the freeze policy, the event protocol,
run state, the workspace on disk, image folders, the TF Hub cache, errors and settings. Stdlib,
pydantic and TOML only: nothing here imports TensorFlow, Keras, Textual or another tltui package
(``pyproject.toml`` ``[tool.importlinter]`` checks it).
"""
