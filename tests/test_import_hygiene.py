"""The app's entry points never load TensorFlow or Keras (docs/architecture.md, invariant 1)."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import sys, tltui.tui.app, tltui.commands.tui, tltui.commands.main\n"
    # screens load lazily: import every screen and widget module too
    "import pkgutil, importlib, tltui.tui.screens, tltui.tui.widgets\n"
    "for pkg in (tltui.tui.screens, tltui.tui.widgets):\n"
    "    for m in pkgutil.iter_modules(pkg.__path__):\n"
    "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
    "bad = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith(('tensorflow.', 'keras', 'tf_keras')))\n"
    "assert not bad, bad\n"
)


def test_tui_entry_imports_no_tensorflow():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_cli_without_the_app_imports_no_textual():
    code = (
        "import sys, tltui.commands.main, tltui.commands.tui\n"
        "tltui.commands.main.build_parser()\n"
        "assert not any(m == 'textual' or m.startswith('textual.') for m in sys.modules), 'textual imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
