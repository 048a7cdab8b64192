"""An exchange's outcome: in a session, a user asks ("my jollof keeps burning at the bottom
of the pot, any idea why?"), an assistant answers ("use a heavy-based pot"), and the user
says what came of it ("borrowed my aunt's cast iron pot and it came out perfect"). A later
question about what was done ("how did Sam fix the burnt jollof?") wants that third turn,
which seldom shares the question's words or meaning; the first two do. So, for such a
question (retrieval_service.lexical.is_outcome_query), the third turn takes at least its
exchange question's dense and lexical scores (Smoothing.outcome, MEMLAKE_RANK_OUTCOME), and
the question turn keeps its answered-question factor: the outcome ranks above both.
Between people (no assistant's turn) a third turn is as often just more talk, and the rule
cost LoCoMo recall@5 0.761 -> 0.738 there, so the answer must be an assistant's."""

from __future__ import annotations

import numpy as np

from memlake.v1 import memory_pb2 as pb


def _assistant(doc: bytes) -> bool:
    """A stored turn spoken by an assistant, by role or speaker."""
    c = pb.Memory.FromString(doc).conversation
    return c.role.lower() == "assistant" or c.speaker.lower() == "assistant"


def _assistants(part, rows: np.ndarray) -> np.ndarray:
    """Whether each row is an assistant's turn, read from its document once per row and
    kept on the partition (not in snapshots: rows are append-only and a row's role never
    changes, and a compacted partition starts afresh)."""
    known = getattr(part, "_assistant_rows", None)
    if known is None or len(known) < part.n:
        grown = np.full(max(part.n, 2 * (0 if known is None else len(known))), -1, np.int8)
        if known is not None:
            grown[: len(known)] = known
        part._assistant_rows = known = grown
    todo = rows[known[rows] < 0]
    for r in np.unique(todo).tolist():
        known[r] = _assistant(part.docs[r])
    return known[rows] == 1


def outcome_of(part, m: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of a partition's rows that concludes an exchange, the row of the question
    it concludes, else -1: the turn two before it asked (its text ends with "?"), the turn
    before it is an assistant's, and this turn is the asker's again and no new question.
    All three pass the filters m. Call with the partition's lock held."""
    out = np.full(len(rows), -1, dtype=np.int64)
    prv = part.prev_row[rows]
    q = np.where(prv >= 0, part.prev_row[np.maximum(prv, 0)], -1)
    at = np.nonzero(q >= 0)[0]
    at = at[part.question[q[at]]]  # the few whose turn two before asked, first
    if not len(at):
        return out
    codes = part._codes["speakers"]
    codes.sync(part.speakers, part.n)
    who = codes.codes
    r, p, qq = rows[at], prv[at], q[at]
    good = m[qq] & m[p] & ~part.question[r] & (who[qq] == who[r]) & (who[p] != who[r])
    if good.any():
        good[good] = _assistants(part, p[good])
    out[at[good]] = qq[good]
    return out
