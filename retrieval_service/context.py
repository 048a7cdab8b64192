"""GetContext: BACKGROUND first, the session's newest turns, then what is relevant to the
intent, then the rest of the session's hot tail, deduplicated, within a token budget
(counted with shared.tokens), plus a rendered block for a prompt."""

from __future__ import annotations

from dataclasses import dataclass

from memlake.v1 import memory_pb2 as pb
from shared.convert import TYPE_NAMES
from shared.tokens import additive, count_tokens, truncate


@dataclass
class Candidate:
    memory: pb.Memory
    score: float
    reason: str  # "background" | "session_tail" | "relevant"
    conflicted: bool = False


def render_line(m: pb.Memory, conflicted: bool = False) -> str:
    t = TYPE_NAMES.get(m.type, "MEMORY")
    when = ""
    if m.HasField("occur_time") and m.type in (pb.MEMORY_TYPE_EVENT, pb.MEMORY_TYPE_CONVERSATION):
        when = " " + m.occur_time.ToDatetime().strftime("%Y-%m-%d")
    label = ""
    if m.type == pb.MEMORY_TYPE_BACKGROUND:
        label = f"{m.background.key}: "
    elif m.type == pb.MEMORY_TYPE_CONVERSATION and m.conversation.speaker:
        label = f"{m.conversation.speaker}: "
    elif m.type == pb.MEMORY_TYPE_SKILL:
        label = f"{m.skill.name}: "
        steps = "; ".join(f"{i + 1}. {s}" for i, s in enumerate(m.skill.steps))
        return f"- [{t}] {label}{m.content} Steps: {steps}"
    flag = " (CONFLICTED: unresolved contradiction)" if conflicted else ""
    src = (
        f" (source: {m.source.kind or m.source.actor})" if (m.source.kind or m.source.actor) else ""
    )
    return f"- [{t}{when}] {label}{m.content}{flag}{src}"


SECTIONS = {
    "background": "## Background",
    "relevant": "## Relevant memories",
    "session_tail": "## Current session",
}


def assemble(cands: list[Candidate], budget: int) -> tuple[list[tuple[Candidate, int]], str, int]:
    """Greedy in the given order; headers count against the budget; an item that does not fit
    is skipped (a smaller later one may fit). BACKGROUND that does not fit whole is cut."""
    chosen: list[tuple[Candidate, int, str]] = []
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    used = 0
    headers: set[str] = set()
    for c in cands:
        key = " ".join(c.memory.content.lower().split())
        if c.memory.id in seen_ids or key in seen_text:
            continue
        line = render_line(c.memory, c.conflicted)
        header_cost = 0 if c.reason in headers else count_tokens(SECTIONS[c.reason] + "\n") + 1
        cost = count_tokens(line + "\n")
        if used + header_cost + cost > budget:
            if c.reason != "background":
                continue
            room = budget - used - header_cost - 2
            if room <= 4:
                continue
            line = truncate(line, room) + "..."
            cost = count_tokens(line + "\n")
            if used + header_cost + cost > budget:
                continue
        seen_ids.add(c.memory.id)
        seen_text.add(key)
        headers.add(c.reason)
        used += header_cost + cost
        chosen.append((c, cost, line))
    blocks = []
    for reason in ("background", "relevant", "session_tail"):
        picked = [(c, ln) for c, _, ln in chosen if c.reason == reason]
        if reason == "session_tail":  # chosen newest first, shown in turn order
            picked.sort(key=lambda p: p[0].memory.conversation.turn_index)
        lines = [ln for _, ln in picked]
        if lines:
            blocks.append(SECTIONS[reason] + "\n" + "\n".join(lines))
    rendered = "\n\n".join(blocks)
    if not rendered:
        total = 0
    elif additive():  # WordPiece never joins words across a line break: sum the parts
        total = sum(cost for _, cost, _ in chosen) + sum(count_tokens(SECTIONS[r]) for r in headers)
    else:
        total = count_tokens(rendered)
    return [(c, cost) for c, cost, _ in chosen], rendered, total
