"""Screens of the app, one module each; the app imports all but the home screen on first use.

- ``base``: :class:`~tltui.tui.screens.base.RunsView`, the contract of the screens that show
  runs (the app hands them changed runs and takes its actions' targets from them).
- Runs views: ``runs`` (home), ``run`` (one run, live), ``compare``.
- ``presets`` (browse, edit, queue presets), ``freeze_map`` (what trains, layer by layer),
  ``inference`` (classify a folder with a completed run): each gets its workspace in its
  constructor, so any app can host it (the tests' ``HostApp`` does).
- ``help``: the keys of the screen it opened on (:mod:`tltui.tui.keys`, as the command palette).
- Dialogs, a ``ModalScreen[T]`` a module, answering through ``dismiss``: ``confirm`` (yes/no),
  ``preset_picker`` (a preset to queue), ``save_as`` (the presets screen's name prompt).
"""
