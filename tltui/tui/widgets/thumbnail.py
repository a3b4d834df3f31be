"""An image drawn in the terminal with half-block characters.

Each cell shows two pixels stacked vertically: ``▀`` with the top pixel as the
foreground colour and the bottom pixel as the background. That works in every
terminal with true colour (and degrades to the nearest palette colour
elsewhere). Decoding happens in a thread so a large photo never blocks the UI;
a file that cannot be decoded shows one line saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from rich.style import Style
from rich.text import Text
from textual import work
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.worker import get_current_worker

#: Pixels kept after decoding; enough for a 160x48 terminal's preview area.
MAX_SOURCE = (200, 120)
#: Refuse images above this many pixels (decompression-bomb guard).
MAX_PIXELS = 64_000_000

HALF_BLOCK = "▀"
#: How images are drawn: ``halfblock`` (here), or ``kitty`` / ``sixel`` through textual-image; set
#: once before the app starts (:func:`tltui.tui.image_renderer.setup`).
RENDERER = "halfblock"


def protocol_widget(renderer: str) -> type[Widget] | None:
    """textual-image's widget for a graphics protocol (``None``: half blocks)."""
    if renderer == "kitty":
        from textual_image.widget import TGPImage

        return TGPImage
    if renderer == "sixel":
        from textual_image.widget import SixelImage

        return SixelImage
    return None


def load_preview(path: str | Path, max_size: tuple[int, int] = MAX_SOURCE) -> Image.Image:
    """Decode ``path`` into a small RGB image. Raises ``OSError``/``ValueError`` with a short reason."""
    with Image.open(path) as src:
        w, h = src.size
        if w * h > MAX_PIXELS:
            raise ValueError(f"image is {w}x{h}, too large to preview")
        src.draft("RGB", max_size)  # JPEG: decode at reduced scale
        src.seek(0)  # first frame of GIF/TIFF
        im: Image.Image = ImageOps.exif_transpose(src) or src
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            flat = Image.new("RGB", im.size, (0, 0, 0))
            flat.paste(im, mask=im.getchannel("A"))
            im = flat
        elif im.mode.startswith("I;16") or im.mode in ("I", "F"):
            im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L").convert("RGB")
        else:
            im = im.convert("RGB")
        im.thumbnail(max_size, Image.Resampling.LANCZOS)
        return im.copy()


def half_blocks(image: Image.Image, width: int, height: int) -> Text:
    """``image`` scaled to fit ``width`` x ``height`` cells (aspect kept, centred)."""
    if width < 1 or height < 1:
        return Text()
    src_w, src_h = image.size
    scale = min(width / src_w, (2 * height) / src_h)
    pw, ph = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    ph += ph % 2  # whole cells
    small = image.resize((pw, ph), Image.Resampling.BOX).convert("RGB")
    px = small.load()
    assert px is not None  # None only for an image not decoded yet; resize() returned a decoded one
    pad_left = (width - pw) // 2
    pad_top = max(0, (height - ph // 2) // 2)
    out = Text(no_wrap=True, overflow="crop")
    for _ in range(pad_top):
        out.append("\n")
    for row in range(0, ph, 2):
        out.append(" " * pad_left)
        for col in range(pw):
            top = px[col, row]
            bottom = px[col, row + 1] if row + 1 < ph else (0, 0, 0)
            out.append(HALF_BLOCK, Style(color=_rgb(top), bgcolor=_rgb(bottom)))
        if row + 2 < ph:
            out.append("\n")
    return out


def _rgb(p: tuple[int, ...] | int | float) -> str:
    if isinstance(p, tuple):
        r, g, b = p[:3]
    else:
        r = g = b = int(p)
    return f"#{r:02x}{g:02x}{b:02x}"


@dataclass(frozen=True)
class _Decoded:
    path: str
    image: Image.Image | None
    error: str | None


class Thumbnail(Widget):
    """Shows the image at :attr:`path` (or a hint when there is none)."""

    DEFAULT_CSS = """
    Thumbnail {
        width: 1fr;
        height: 1fr;
        min-height: 4;
    }
    """

    path: reactive[str | None] = reactive(None)

    class Loaded(Message):
        """The preview of ``path`` finished decoding (``error`` says why not)."""

        def __init__(self, path: str, error: str | None) -> None:
            self.path = path
            self.error = error
            super().__init__()

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._image: Image.Image | None = None
        self._error: str | None = None
        self.renderer = RENDERER
        self._protocol = protocol_widget(self.renderer)

    def compose(self) -> Any:
        if self._protocol is not None:  # the image at the terminal's own resolution
            widget = self._protocol(id="thumb-image")
            widget.display = False
            yield widget

    @property
    def ready(self) -> bool:
        """Nothing to show, or the current image is decoded (or failed to)."""
        return self.path is None or self._image is not None or self._error is not None

    def watch_path(self, path: str | None) -> None:
        self._image, self._error = None, None
        if self._protocol is not None and self.is_mounted:
            self.query_one("#thumb-image").display = False
        self.refresh()
        if path is not None:
            self._decode(path)

    @work(thread=True, exclusive=True, group="thumbnail", exit_on_error=False)
    def _decode(self, path: str) -> None:
        try:
            result = _Decoded(path, load_preview(path), None)
        except Exception as e:  # noqa: BLE001 - arbitrary user files: any decoder error means "no preview"
            result = _Decoded(path, None, str(e).splitlines()[0] if str(e) else type(e).__name__)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, result)

    def _show(self, result: _Decoded) -> None:
        if result.path != self.path:
            return
        self._image, self._error = result.image, result.error
        if self._protocol is not None:
            shown = self.query_one("#thumb-image")
            shown.display = result.error is None
            if result.error is None:
                shown.image = result.path  # type: ignore[attr-defined]  # textual-image decodes it at full size
        self.refresh()
        self.post_message(self.Loaded(result.path, result.error))

    def render(self) -> Text:
        if self.path is None:
            return Text("no image selected", style="dim")
        if self._error is not None:
            return Text(f"no preview: {self._error}", style="dim")
        if self._image is None:
            return Text("loading…", style="dim")
        if self._protocol is not None:
            return Text()  # the protocol widget draws it
        return half_blocks(self._image, self.content_size.width, self.content_size.height)
