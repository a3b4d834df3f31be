"""Operations shared by the CLI and the app: queueing and controlling runs (``queue_ops``),
reading live runs (``live``) and the inference client (``predict``). Imports the core and the
runner's public helpers; never Textual, TensorFlow or the commands."""
