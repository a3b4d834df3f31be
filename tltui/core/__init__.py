"""The shared core: what every process (CLI, app, runner, worker) agrees on.

Presets and their schema, the backbone catalog and stages, the freeze policy, the event protocol,
run state, the workspace on disk, image folders, the TF Hub cache, errors and settings. Besides the
stdlib: pydantic, the TOML libraries and platformdirs; Pillow and NumPy for images (``images``,
``demo``, ``decoded_store``); NVML (``pynvml``, imported when GPUs are sampled, ``gpus``). Nothing
here imports TensorFlow, Keras, Textual or another tltui package (``pyproject.toml``
``[tool.importlinter]`` checks it).
"""
