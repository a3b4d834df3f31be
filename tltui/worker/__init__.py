"""The only code that imports TensorFlow, Keras, TFDS or TF Hub.

It runs in its own process: ``python -m tltui.worker train|describe|predict ...``.
"""
