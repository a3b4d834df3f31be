"""The freeze map: what trains and what is frozen, stage by stage and layer by layer.

Renders a freeze map dict (the shape ``tltui.core.freeze_policy.build_map`` returns
and the worker records as a run's ``freeze_map.json``): a summary, a one-line
strip of the whole network, and a collapsible tree stage -> block -> layer.
Pure rendering: the widget never computes a policy itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from tltui.core import catalog
from tltui.core import formatting as fmt

FROZEN = "frozen"
TRAINABLE = "trainable"
BN_INFERENCE = "BN infer"
BN_AFFINE = "BN γβ"  # BatchNorm in inference mode whose gamma/beta train (freeze.batchnorm = "inference")
NO_WEIGHTS = "·"

#: Colour per state; "alt" shades mark every other stage in the strip.
STATE_STYLE = {
    FROZEN: "#5f87d7",
    TRAINABLE: "#5fd75f",
    BN_INFERENCE: "#d7af5f",
    BN_AFFINE: "#afd75f",
    NO_WEIGHTS: "dim",
}
STATE_STYLE_ALT = {FROZEN: "#3a5fa0", TRAINABLE: "#3aa03a", BN_INFERENCE: "#d7af5f", BN_AFFINE: "#afd75f"}


@dataclass(frozen=True)
class LayerRow:
    """One layer of a freeze map, normalised for display."""

    name: str
    type: str
    stage: str
    trainable: bool
    params: int
    trainable_params: int
    output_shape: str
    bn_inference: bool
    moved: float | None = None  # ||w - w0|| / ||w0|| since the run started (a run's moved.json)
    moved_error: bool = False  # frozen, yet its weights or statistics moved

    @property
    def state(self) -> str:
        if self.params == 0:
            # the head's Dense has 0 params until the class count is known; it always trains
            return TRAINABLE if self.stage == "head" and self.trainable and self.type == "Dense" else NO_WEIGHTS
        if self.bn_inference:
            return BN_AFFINE if self.trainable else BN_INFERENCE
        return TRAINABLE if self.trainable else FROZEN


@dataclass(frozen=True)
class StageSummary:
    name: str
    layers: int
    frozen: int  # layers with weights that do not train, BatchNorm aside
    bn_inference: int
    trainable: int
    params: int
    trainable_params: int
    state: str  # of the layers that decide it: see :func:`deciding`


def format_shape(shape: Any) -> str:
    if isinstance(shape, str):
        return shape
    if isinstance(shape, Sequence):
        if shape and all(isinstance(s, Sequence) and not isinstance(s, str) for s in shape):
            return " ".join(format_shape(s) for s in shape)
        dims = list(shape)
        if dims and dims[0] is None:
            dims = dims[1:]
        return "(" + ",".join("?" if d is None else str(d) for d in dims) + ")"
    return "" if shape is None else str(shape)


def rows_of(freeze_map: Mapping[str, Any]) -> list[LayerRow]:
    record = freeze_map.get("moved") or {}
    moved = {m.get("name"): m for m in record.get("layers", []) if isinstance(m, dict)}
    errors = set(record.get("errors") or [])
    out = []
    for layer in freeze_map.get("layers", []):
        typ = str(layer.get("type", ""))
        trainable = bool(layer.get("trainable", False))
        bn = layer.get("bn_inference")
        if bn is None:
            bn = "BatchNormalization" in typ and not trainable
        params = int(layer.get("params") or 0)
        tp = layer.get("trainable_params")
        out.append(
            LayerRow(
                name=str(layer.get("name", "?")),
                type=typ,
                stage=str(layer.get("stage", "?")),
                trainable=trainable,
                params=params,
                trainable_params=int(tp) if tp is not None else (params if trainable else 0),
                output_shape=format_shape(layer.get("output_shape")),
                bn_inference=bool(bn),
                moved=_moved_of(moved.get(layer.get("name"))),
                moved_error=layer.get("name") in errors,
            )
        )
    return out


def deciding(rows: Sequence[LayerRow]) -> list[LayerRow]:
    """The layers whose state a stage or a strip cell shows: those with weights, BatchNorm
    aside when there are others (it has its own policy, shown per layer)."""
    weighted = [r for r in rows if r.state != NO_WEIGHTS]
    return [r for r in weighted if "BatchNormalization" not in r.type] or weighted


def state_of(rows: Sequence[LayerRow]) -> str:
    core = deciding(rows)
    if not core:
        return NO_WEIGHTS
    trainable = sum(1 for r in core if r.state == TRAINABLE)
    return FROZEN if trainable == 0 else TRAINABLE if trainable == len(core) else "partly"


def stages_of(rows: Sequence[LayerRow]) -> list[StageSummary]:
    """Per-stage counts, in model order. Layers without weights count in ``layers`` only."""
    acc: dict[str, list[LayerRow]] = {}
    for r in rows:
        acc.setdefault(r.stage, []).append(r)
    return [
        StageSummary(
            name=name,
            layers=len(rs),
            frozen=sum(1 for r in rs if r.state == FROZEN),
            bn_inference=sum(1 for r in rs if r.state in (BN_INFERENCE, BN_AFFINE)),
            trainable=sum(1 for r in rs if r.state == TRAINABLE),
            params=sum(r.params for r in rs),
            trainable_params=sum(r.trainable_params for r in rs),
            state=state_of(rs),
        )
        for name, rs in acc.items()
    ]


def family_of(freeze_map: Mapping[str, Any]) -> catalog.Family | None:
    """The backbone family of a freeze map (its ``family``, else its backbone's); ``None``: unknown."""
    fam = catalog.FAMILIES.get(str(freeze_map.get("family")))
    return fam if fam is not None else catalog.family_of(str(freeze_map.get("backbone", "")))


def stage_blocks(
    rows: Sequence[LayerRow], family: catalog.Family | None
) -> list[tuple[StageSummary, list[tuple[str | None, list[LayerRow]]]]]:
    """Stages in model order, each with its runs of layers by block as ``family`` names them
    (``None``: layers directly under the stage); a stage of one block, or none, is not split."""
    by_stage: dict[str, list[LayerRow]] = {}
    for r in rows:
        by_stage.setdefault(r.stage, []).append(r)
    out = []
    for s in stages_of(rows):
        blocks: list[tuple[str | None, list[LayerRow]]] = []
        for r in by_stage[s.name]:
            b = family.block_of(r.name) if family is not None else None
            if blocks and blocks[-1][0] == b:
                blocks[-1][1].append(r)
            else:
                blocks.append((b, [r]))
        named = {b for b, _ in blocks if b is not None}
        if len(named) <= 1:  # one block (or none) is no structure: flatten
            blocks = [(None, by_stage[s.name])]
        out.append((s, blocks))
    return out


def strip(rows: Sequence[LayerRow], width: int) -> Text:
    """The whole network in ``width`` cells: each stage with weights gets cells in proportion
    to its deciding layers (at least one); each cell shows the majority state of its layers."""
    by_stage: dict[str, list[LayerRow]] = {}
    for r in rows:
        by_stage.setdefault(r.stage, []).append(r)
    groups = [g for g in (deciding(rs) for rs in by_stage.values()) if g][:width]
    if width <= 0 or not groups:
        return Text()
    total = sum(len(g) for g in groups)
    cells = [max(1, round(width * len(g) / total)) for g in groups]
    while sum(cells) > width:
        cells[cells.index(max(cells))] -= 1
    while sum(cells) < width:
        cells[cells.index(max(cells))] += 1
    out = Text(no_wrap=True, overflow="crop")
    for i, (group, n) in enumerate(zip(groups, cells, strict=True)):
        palette = STATE_STYLE if i % 2 == 0 else STATE_STYLE_ALT
        k = len(group)
        for c in range(n):
            start = c * k // n
            chunk = group[start : max(start + 1, (c + 1) * k // n)]
            trainable = sum(1 for r in chunk if r.state == TRAINABLE)
            state = TRAINABLE if 2 * trainable >= len(chunk) else FROZEN
            out.append("█", style=palette[state])
    return out


def _state_text(state: str) -> Text:
    style = STATE_STYLE.get(state, "yellow")
    return Text(f"{state:<9}", style=style)


def _moved_of(entry: Any) -> float | None:
    """The larger of a layer's parameter movement and BatchNorm statistics drift."""
    if not isinstance(entry, dict):
        return None
    vals = [v for v in (entry.get("moved"), entry.get("bn_drift")) if isinstance(v, (int, float))]
    return max(vals) if vals else None


def format_moved(x: float | None) -> str:
    if x is None:
        return ""
    return "moved 0" if x == 0 else f"moved {x:.1e}"


def _layer_label(r: LayerRow, name_width: int) -> Text:
    t = _state_text(r.state)
    t.append(f" {r.name:<{name_width}}")
    t.append(f" {r.type:<20}", style="dim")
    t.append(f" {fmt.params(r.params):>7}" if r.params else "        ", style="bold" if r.params else "")
    t.append(f"  {r.output_shape}", style="dim")
    if r.moved_error:
        t.append(f"  {format_moved(r.moved)}  frozen but moved!", style="bold red")
    elif r.moved is not None:
        t.append(f"  {format_moved(r.moved)}", style="" if r.moved else "dim")
    return t


def _stage_label(s: StageSummary) -> Text:
    t = _state_text(s.state)
    t.append(f" {s.name}", style="bold")
    if s.state == NO_WEIGHTS:
        t.append(f"  {s.layers} layers without weights", style="dim")
        return t
    counts = [(s.trainable, TRAINABLE), (s.frozen, FROZEN), (s.bn_inference, "BN inference")]
    t.append("  " + ", ".join(f"{n} {what}" for n, what in counts if n))
    if s.params:
        t.append(f"  {fmt.params(s.trainable_params)}/{fmt.params(s.params)} params train", style="dim")
    elif s.name == "head" and s.trainable:
        t.append("  its size follows the number of classes", style="dim")  # see summary()
    return t


def unknown_head(rows: Sequence[LayerRow]) -> bool:
    """The head's Dense shows 0 parameters: the class count was not known (a preset's map)."""
    return any(r.stage == "head" and r.type == "Dense" and r.trainable and r.params == 0 for r in rows)


def _block_label(name: str, rs: Sequence[LayerRow]) -> Text:
    t = _state_text(state_of(rs))
    t.append(f" {name}")
    t.append(f"  {len(rs)} layers, {fmt.params(sum(r.params for r in rs))} params", style="dim")
    return t


def summary(freeze_map: Mapping[str, Any], rows: Sequence[LayerRow]) -> Text:
    total = sum(r.params for r in rows)
    trainable = sum(r.trainable_params for r in rows)
    counts = {state: sum(1 for r in rows if r.state == state) for state in (TRAINABLE, FROZEN, BN_INFERENCE, BN_AFFINE)}
    pct = f" ({100 * trainable / total:.1f}%)" if total else ""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(str(freeze_map.get("backbone", "?")), style="bold")
    t.append(f" · depth {freeze_map.get('depth', '?')} · BatchNorm {freeze_map.get('batchnorm', '?')}")
    head = unknown_head(rows)  # never a bare "0/410k train" for a frozen backbone whose head trains
    t.append(f" · {'backbone ' if head else ''}{fmt.params(trainable)}/{fmt.params(total)} params train{pct}")
    t.append("\n")
    if head:
        from tltui.core.preset_head import head_size_text

        features = freeze_map.get("head_features")
        size = head_size_text(features if isinstance(features, int) else None)
        t.append(f"+ the head, which trains: {size}", style=STATE_STYLE[TRAINABLE])
        t.append(" · ")
    t.append("layers with weights: ")
    t.append(f"{counts[TRAINABLE]} trainable", style=STATE_STYLE[TRAINABLE])
    t.append(", ")
    t.append(f"{counts[FROZEN]} frozen", style=STATE_STYLE[FROZEN])
    t.append(", ")
    t.append(f"{counts[BN_INFERENCE] + counts[BN_AFFINE]} BatchNorm in inference mode", style=STATE_STYLE[BN_INFERENCE])
    if counts[BN_AFFINE]:
        t.append(f" ({counts[BN_AFFINE]} train gamma/beta)", style=STATE_STYLE[BN_AFFINE])
    record = freeze_map.get("moved")
    if isinstance(record, dict):
        errors = record.get("errors") or []
        t.append(f" · after epoch {record.get('epoch')}: ")
        if errors:
            t.append(f"{len(errors)} frozen layer(s) moved", style="bold red")
        else:
            t.append("every frozen layer unmoved", style=STATE_STYLE[FROZEN])
    return t


class NetworkStrip(Widget):
    """One line: every weighted layer of the network, frozen vs trainable."""

    DEFAULT_CSS = """
    NetworkStrip { height: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: list[LayerRow] = []

    def set_rows(self, rows: list[LayerRow]) -> None:
        self._rows = rows
        self.refresh()

    def render(self) -> Text:
        return strip(self._rows, self.content_size.width)


class LayerMap(Vertical):
    """Summary, strip, legend and tree of one freeze map. Call :meth:`show` to (re)draw.

    The tree keeps its shape (and what is expanded) while only states change, so
    stepping the depth with ``+``/``-`` does not lose the user's place.
    """

    DEFAULT_CSS = """
    LayerMap { height: 1fr; }
    LayerMap > #layer-map-summary { height: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    LayerMap > #layer-map-legend { height: 1; color: $text-muted; }
    LayerMap > #layer-map-tree { height: 1fr; scrollbar-size-horizontal: 1; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shape: tuple[str, ...] = ()
        self._tree_nodes: dict[str, TreeNode[Any]] = {}
        self.rows: list[LayerRow] = []
        self.freeze_map: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="layer-map-summary")
        yield NetworkStrip(id="layer-map-strip")
        yield Static(self._legend(), id="layer-map-legend")
        tree: Tree[Any] = Tree("network", id="layer-map-tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree

    @staticmethod
    def _legend() -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        for state in (FROZEN, TRAINABLE, BN_INFERENCE, BN_AFFINE):
            t.append("█ ", style=STATE_STYLE[state])
            words = {BN_INFERENCE: "BatchNorm in inference mode", BN_AFFINE: "BN γβ train"}
            t.append(words.get(state, state) + "   ")
        return t

    def on_mount(self) -> None:
        if self.freeze_map:  # shown before it was composed
            self.show(self.freeze_map)

    def show(self, freeze_map: Mapping[str, Any]) -> None:
        """Draw ``freeze_map``; safe to call right after mounting (it draws once composed)."""
        self.freeze_map = dict(freeze_map)
        self.rows = rows_of(freeze_map)
        if not self.query("#layer-map-summary"):
            return
        self.query_one("#layer-map-summary", Static).update(summary(freeze_map, self.rows))
        self.query_one(NetworkStrip).set_rows(self.rows)
        shape = tuple(f"{r.stage}/{r.name}" for r in self.rows)
        if shape != self._shape:
            self._build_tree()
            self._shape = shape
        else:
            self._relabel()

    def expand_all(self) -> None:
        self.query_one("#layer-map-tree", Tree).root.expand_all()

    def collapse_all(self) -> None:
        for child in self.query_one("#layer-map-tree", Tree).root.children:
            child.collapse_all()

    def _groups(self) -> list[tuple[StageSummary, list[tuple[str | None, list[LayerRow]]]]]:
        return stage_blocks(self.rows, family_of(self.freeze_map))

    def _name_width(self) -> int:
        return min(32, max((len(r.name) for r in self.rows), default=8))

    def _build_tree(self) -> None:
        tree = self.query_one("#layer-map-tree", Tree)
        tree.clear()
        self._tree_nodes = {}
        width = self._name_width()
        for stage, blocks in self._groups():
            snode = tree.root.add(_stage_label(stage), data=("stage", stage.name))
            self._tree_nodes[f"stage:{stage.name}"] = snode
            for block, rs in blocks:
                parent = snode
                if block is not None:
                    parent = snode.add(_block_label(block, rs), data=("block", stage.name, block))
                    self._tree_nodes[f"block:{stage.name}:{block}"] = parent
                for r in rs:
                    self._tree_nodes[f"layer:{r.name}"] = parent.add_leaf(
                        _layer_label(r, width), data=("layer", r.name)
                    )
        tree.root.expand()

    def _relabel(self) -> None:
        width = self._name_width()
        for stage, blocks in self._groups():
            self._tree_nodes[f"stage:{stage.name}"].set_label(_stage_label(stage))
            for block, rs in blocks:
                if block is not None:
                    self._tree_nodes[f"block:{stage.name}:{block}"].set_label(_block_label(block, rs))
                for r in rs:
                    self._tree_nodes[f"layer:{r.name}"].set_label(_layer_label(r, width))
