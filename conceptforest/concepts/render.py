"""Draw concept trees with pydot: one picture of the shared schema and one per label.

The DOT text is always written first; SVG and PNG are rendered only when Graphviz's ``dot`` is on PATH, so a
machine without Graphviz still gets every picture as DOT and a clear message saying how to get the rest.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydot

from conceptforest.atomic import atomic_write_bytes, atomic_write_text
from conceptforest.concepts.tree import ConceptTree, concept_id
from conceptforest.defaults import RENDER_FORMATS
from conceptforest.errors import BadInputError
from conceptforest.text import safe_filename

FORMATS = RENDER_FORMATS
_LOW = (255, 255, 255)
_HIGH = (215, 48, 31)


@dataclass
class RenderResult:
    """What a render wrote, and what it could not."""

    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def slugify(text: str) -> str:
    """A file-name-safe form of a label (letters of any script kept), at most 120 UTF-8 bytes.

    See :func:`conceptforest.text.safe_filename`, which also keeps names unique within a folder.
    """
    return safe_filename(text)


def _quote(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def importance_colour(weight: float | None) -> str:
    """White for 0 (or unknown) to red for 1."""
    if weight is None:
        return "#ffffff"
    w = min(1.0, max(0.0, weight))
    r, g, b = (round(lo + (hi - lo) * w) for lo, hi in zip(_LOW, _HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


class _Graph:
    def __init__(self, title: str, importance: Mapping[str, float] | None) -> None:
        self.dot = pydot.Dot(
            graph_type="digraph",
            rankdir="LR",
            charset="UTF-8",
            label=_quote(title),
            labelloc="t",
            fontname="Helvetica",
        )
        self.dot.set_node_defaults(fontname="Helvetica", fontsize="10", style="filled", fillcolor="#ffffff")
        self.count = 0
        top = max((abs(v) for v in (importance or {}).values()), default=0.0)
        self.scaled = {k: abs(v) / top for k, v in (importance or {}).items()} if top > 0 else {}

    def node(self, text: str, shape: str, key: str | None = None) -> str:
        self.count += 1
        name = f"n{self.count}"
        weight = self.scaled.get(key) if key is not None else None
        self.dot.add_node(
            pydot.Node(name, label=_quote(text), shape=shape, fillcolor=_quote(importance_colour(weight)))
        )
        return name

    def edge(self, source: str, target: str) -> None:
        self.dot.add_edge(pydot.Edge(source, target))


def build_graph(
    tree: ConceptTree, label: str | None = None, importance: Mapping[str, float] | None = None
) -> pydot.Dot:
    """The schema graph (``label=None``: domain → parts → attributes) or one label's graph (→ values).

    ``importance`` maps concept ids, ``part/path:attribute`` keys or part paths to a weight; nodes are shaded
    from white (0) to red (the largest weight).
    """
    graph = _Graph(f"{tree.domain}: {label}" if label else f"{tree.domain}: parts and attributes", importance)
    root = graph.node(label or tree.domain, "doubleoctagon")
    part_nodes: dict[str, str] = {}
    for path, part in tree.iter_parts():
        parent = part_nodes.get(path.rsplit("/", 1)[0], root) if "/" in path else root
        part_nodes[path] = graph.node(part.name, "box", key=path)
        graph.edge(parent, part_nodes[path])
        for attribute in part.attributes:
            attr_node = graph.node(attribute, "ellipse", key=f"{path}:{attribute}")
            graph.edge(part_nodes[path], attr_node)
            if label is None:
                continue
            for value in tree.values.get(label, {}).get(path, {}).get(attribute, []):
                value_node = graph.node(value, "note", key=concept_id(path, attribute, value))
                graph.edge(attr_node, value_node)
    return graph.dot


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render_tree(
    tree: ConceptTree,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("svg", "dot"),
    labels: Sequence[str] | None = None,
    importance: Mapping[str, float] | None = None,
) -> RenderResult:
    """Write ``schema.*`` and one ``label-<slug>.*`` per label into ``out_dir``.

    The slug is :func:`~conceptforest.text.safe_filename` of the label: at most 120 UTF-8 bytes, any script,
    unique within the folder (a short hash of the label is appended when two would collide).

    Parameters
    ----------
    formats : sequence of {"svg", "png", "dot"}
        DOT is always written, whatever is asked, because it needs no Graphviz.
    labels : sequence of str, optional
        Which labels to draw; all by default.
    importance : mapping, optional
        Node weights for shading (see :func:`build_graph`).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise BadInputError(f"Unknown picture format(s) {unknown}.", hint=f"use some of {list(FORMATS)}.")
    chosen = list(tree.labels if labels is None else labels)
    missing = [label for label in chosen if label not in tree.labels]
    if missing:
        raise BadInputError(f"Label(s) {missing} are not in the tree.", hint=f"choose from {tree.labels}.")
    out = Path(out_dir)
    result = RenderResult()
    can_render = dot_available()
    wanted_images = [f for f in formats if f != "dot"]
    if wanted_images and not can_render:
        result.warnings.append(
            "Graphviz's 'dot' program is not on PATH, so only DOT files were written. "
            "Install Graphviz (apt-get install graphviz, brew install graphviz, or conda install graphviz) "
            "to get SVG/PNG, or open the .dot files in any Graphviz viewer."
        )
    used: set[str] = set()  # file names bounded in bytes and distinct even when long labels share a prefix
    jobs: list[tuple[str, str | None]] = [("schema", None)]
    jobs += [(f"label-{safe_filename(label, used)}", label) for label in chosen]
    for stem, job_label in jobs:
        _write_graph(build_graph(tree, job_label, importance), out / stem, wanted_images if can_render else [], result)
    return result


def _write_graph(graph: pydot.Dot, stem: Path, formats: Sequence[str], result: RenderResult) -> list[Path]:
    """Write ``stem.dot``, then each of ``formats`` through Graphviz (a failure becomes a warning)."""
    written = [atomic_write_text(stem.with_name(f"{stem.name}.dot"), graph.to_string())]
    for fmt in formats:
        try:
            created = graph.create(prog="dot", format=fmt)
        except Exception as exc:  # pydot reports a failed render as a bare assert
            result.warnings.append(f"Graphviz could not render {stem.name}.{fmt}: {exc or type(exc).__name__}")
            continue
        data = created.encode("utf-8") if isinstance(created, str) else created
        written.append(atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"), data))
    result.written.extend(written)
    return written


def rolled_up(concept_weights: Mapping[str, float]) -> dict[str, float]:
    """Concept weights plus, for each ``part:attribute`` and each part (and its parents), the largest weight of
    its concepts: a node is as red as its most important concept, on the concepts' own scale."""
    weights = dict(concept_weights)
    for concept, weight in concept_weights.items():
        if ":" not in concept or "=" not in concept:
            continue
        key = concept.split("=", 1)[0]
        path = key.split(":", 1)[0]
        parents = [path.rsplit("/", depth)[0] for depth in range(path.count("/") + 1)]
        for node in (key, *parents):
            weights[node] = max(weights.get(node, 0.0), abs(weight))
    return weights


def add_legend(graph: pydot.Dot, title: str, largest: float) -> None:
    """A small key inside the picture: white (0) to red (``largest``) in three swatches."""
    legend = pydot.Subgraph("cluster_legend", label=_quote(title), fontname="Helvetica", fontsize="9", style="dashed")
    for number, share in enumerate((0.0, 0.5, 1.0)):
        legend.add_node(
            pydot.Node(
                f"legend{number}",
                label=_quote(f"{share * largest:.3g}"),
                shape="box",
                fontsize="9",
                fillcolor=_quote(importance_colour(share)),
            )
        )
    graph.add_subgraph(legend)


def render_label_trees(
    tree: ConceptTree,
    out_dir: str | Path,
    importance: Mapping[str, Mapping[str, float]],
    *,
    formats: Sequence[str] = ("svg",),
    legend: str = "importance",
) -> tuple[dict[str, list[Path]], RenderResult]:
    """One picture per label of ``importance`` (label -> concept id -> weight) that the tree has, each shaded by
    that label's own weights (parts and attributes by their largest concept) with a colour key in the picture.

    Returns the files written per label (``label-<slug>.dot`` always; the other formats when Graphviz's ``dot`` is
    on PATH) and what could not be drawn.
    """
    out, result, used = Path(out_dir), RenderResult(), set[str]()
    drawable = [f for f in formats if f != "dot"] if dot_available() else []
    files: dict[str, list[Path]] = {}
    for label, weights in importance.items():
        if label not in tree.labels:
            continue
        graph = build_graph(tree, label, rolled_up(weights))
        add_legend(graph, f"{legend} for {label}", max((abs(w) for w in weights.values()), default=0.0))
        files[label] = _write_graph(graph, out / f"label-{safe_filename(label, used)}", drawable, result)
    return files, result
