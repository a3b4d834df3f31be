"""The generated reference (docs/reference/) is what the pydantic models say; `make docs` writes it."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from tltui.core import presets, reference, settings


def test_the_committed_reference_is_the_generated_one() -> None:
    stale = reference.stale_pages(reference.docs_dir())
    assert not stale, f"{stale} differ from the models: run `make docs` (python -m tltui.core.reference)"


def test_every_field_of_the_models_is_in_the_reference() -> None:
    text = reference.render_presets() + reference.render_settings()
    for section in ("data", "model", "freeze", "train"):
        model = presets.Preset.model_fields[section].annotation
        assert isinstance(model, type)
        for name in model.model_fields:  # type: ignore[attr-defined]
            assert f"| `{name}` |" in text, f"{section}.{name}"
    for table, model in settings.Settings.TABLES.items():
        assert f"### [{table}]" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{table}.{name}"


def test_a_row_says_type_bounds_default_and_meaning() -> None:
    text = reference.render_presets()
    assert "| `batch_size` | integer (≥ 1, ≤ 65536) | `32` | images per training step |" in text
    assert '| `batchnorm` | "frozen" \\| "inference" \\| "trainable" | `"frozen"` |' in text
    assert "| `backbone` | string | required |" in text
    assert "| `gpus` | integer (≥ 0, ≤ 64) | unset |" in text
    settings_text = reference.render_settings()
    assert "| `tick` | number (> 0) | `0.2` | `TLTUI_RUNNER_TICK` |" in settings_text
    assert "| `TLTUI_IMAGES` | `ui.images` |" in settings_text


def test_check_fails_on_a_stale_page_and_write_fixes_it(tmp_path: Path, capsys) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(reference.docs_dir() / "reference", docs / "reference")
    page = docs / "reference" / "presets.md"
    page.write_text(page.read_text().replace("images per training step", "images per step"))
    assert reference.main(["--check", "--docs", str(docs)]) == 1
    assert "reference/presets.md: out of date with the models; run `make docs`" in capsys.readouterr().err
    assert reference.main(["--docs", str(docs)]) == 0
    assert reference.main(["--check", "--docs", str(docs)]) == 0
    assert "images per training step" in page.read_text()


def test_a_page_without_its_markers_is_an_error() -> None:
    try:
        reference.updated("# no markers\n", "x", "reference/presets.md")
    except ValueError as e:
        assert "reference/presets.md: expected the markers" in str(e)
    else:
        raise AssertionError("no error")


def test_types_read_as_toml_users_write_them() -> None:
    from typing import Literal

    assert reference.type_name(int | None) == "integer"
    assert reference.type_name(bool | Literal["a", "b"]) == 'boolean | "a" | "b"'
    assert reference.type_name(list[str]) == "list of string"
    assert reference.type_name(dict[str, int]) == "table"
    assert reference.default(Field(None)) == "unset"  # type: ignore[arg-type]
