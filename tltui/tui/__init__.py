"""The Textual app. Imports core modules, never the worker and never TensorFlow."""
