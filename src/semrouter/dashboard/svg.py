"""Drawing a PolicyGraph as SVG, server-side: three columns (signals, decisions in evaluation
order, models) and curved edges between them.

Every element carries its node or edge ids as data attributes (`data-node`, `data-source`,
`data-target`) and a `<title>` tooltip, so the page's script can highlight one decision's
paths and the tests can find nodes; styles are classes (static/dashboard.css), never inline.
Text is escaped; long rules are cut to RULE_CHARS.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from semrouter.dashboard.policy import Node, PolicyGraph

CHAR_W = 7.2
"""Width of one character of the 12px labels, roughly: boxes are sized from it."""
RULE_CHARS = 60
GAP_Y = 12
GAP_X = 150
PAD = 16
HEIGHTS = {"signal": 42, "decision": 58, "model": 44}


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    w: float
    h: float


def _lines(node: Node) -> list[str]:
    d = node.detail
    if node.kind == "signal":
        return [node.label, f"{d.get('type', '')}{'' if d.get('used', True) else ' · unused'}"]
    if node.kind == "decision":
        priority = "" if d.get("priority") is None else f" · priority {d['priority']}"
        rules = str(d.get("rules", ""))
        if len(rules) > RULE_CHARS:
            rules = rules[: RULE_CHARS - 1] + "…"
        return [f"{d.get('rank', '')}. {node.label}{priority}", rules, str(d.get("reasoning", ""))]
    family = d.get("reasoning_family")
    return [node.label, f"{d.get('upstream_id', '')}{f' · {family}' if family else ''}"]


def _width(nodes: list[Node]) -> float:
    longest = max((len(line) for n in nodes for line in _lines(n)), default=8)
    return longest * CHAR_W + 2 * PAD


def layout(graph: PolicyGraph) -> tuple[dict[str, Box], float, float]:
    """Each node's box and the drawing's width and height."""
    boxes: dict[str, Box] = {}
    x = float(PAD)
    height = 0.0
    for kind in ("signal", "decision", "model"):
        column = graph.of_kind(kind)
        w = _width(column)
        y = PAD + 20.0  # below the column title
        for node in column:
            boxes[node.id] = Box(x, y, w, HEIGHTS[kind])
            y += HEIGHTS[kind] + GAP_Y
        height = max(height, y)
        x += w + GAP_X
    return boxes, x - GAP_X + PAD, height + PAD


def render(graph: PolicyGraph) -> str:
    boxes, width, height = layout(graph)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="policy-graph" id="policy-graph" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'role="img" aria-label="routing policy">'
    ]
    for kind, title in (("signal", "signals"), ("decision", "decisions"), ("model", "models")):
        column = graph.of_kind(kind)
        if column:
            first = boxes[column[0].id]
            parts.append(
                f'<text class="column-title" x="{first.x:.0f}" y="{PAD + 8}">{title}</text>'
            )
    for edge in graph.edges:
        a, b = boxes.get(edge.source), boxes.get(edge.target)
        if a is None or b is None:
            continue
        x1, y1, x2, y2 = a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2
        mid = (x1 + x2) / 2
        style = " negated" if edge.negated else " reasoning" if "on" in edge.label.split() else ""
        parts.append(
            f'<path class="edge{style}" data-source={quoteattr(edge.source)} '
            f"data-target={quoteattr(edge.target)} "
            f'd="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}">'
            f"<title>{escape(f'{edge.source} → {edge.target} {edge.label}'.strip())}</title></path>"
        )
    for node in graph.nodes:
        box = boxes[node.id]
        classes = ["node", node.kind]
        if node.detail.get("used") is False or node.detail.get("reachable") is False:
            classes.append("inactive")
        if node.detail.get("fallback"):
            classes.append("fallback")
        lines = _lines(node)
        parts.append(
            f'<g class="{" ".join(classes)}" data-node={quoteattr(node.id)}>'
            f"<title>{escape(' — '.join(lines))}</title>"
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
            'rx="6"/>'
        )
        for i, line in enumerate(lines):
            cls = "label" if i == 0 else "sub"
            parts.append(
                f'<text class="{cls}" x="{box.x + PAD / 2:.1f}" y="{box.y + 18 + i * 16:.1f}">'
                f"{escape(line)}</text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
