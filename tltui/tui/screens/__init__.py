"""Screens of the app, one module each; the app imports all but the home screen on first use.

- ``base``: :class:`~tltui.tui.screens.base.RunsView`, the contract of the screens that show
  runs (the app hands them changed runs and takes its actions' targets from them).
- Runs views: ``runs`` (home), ``run`` (one run, live), ``compare``.
- ``presets`` (browse, edit, queue presets), ``freeze_map`` (what trains, layer by layer),
  ``inference`` (classify a folder with a completed run): they also run on their own, hosted
  by any app (``_support``: what they share).
- Dialogs: ``help`` (the keys of the screen it opened on), ``dialogs`` (confirm, preset
  picker), ``save_as`` (the presets screen's name prompt).
"""
