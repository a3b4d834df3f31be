"""The detached runner process and what it alone uses.

``loop`` is the queue runner (``python -m tltui.runner``), ``supervisor`` spawns and watches one
worker, ``executor`` and ``executors/`` place jobs (local, Ray, Slurm). It imports the core only,
never the TUI or the commands.
"""
