"""The versioning domain without a network: what it embeds, and record-time order."""

from __future__ import annotations

from memlake.v1 import memory_pb2 as pb
from shared.db.engine import Database
from shared.embedding import HashEmbedder
from versioning_service.facts import AssertResult, FactIn, FactStore


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def _embed(self, texts):
        self.texts += texts
        return super()._embed(texts)


def store(tmp_path) -> tuple[FactStore, CountingEmbedder]:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.upgrade()
    emb = CountingEmbedder()
    return FactStore(db, emb, lambda seq: None), emb


def test_duplicates_are_not_embedded(tmp_path):
    st, emb = store(tmp_path)
    r = st.assert_fact("t", FactIn("u", "", "Ada", "lives_in", "Paris"))
    assert isinstance(r, AssertResult) and emb.texts == ["Ada lives in Paris"]
    r = st.assert_fact("t", FactIn("u", "", "ada", "lives_in", " PARIS "))
    assert r.outcome == pb.WRITE_OUTCOME_DUPLICATE and len(emb.texts) == 1
    r = st.assert_fact("t", FactIn("u", "", "ada", "lives_in", "Rome"))
    assert r.outcome == pb.WRITE_OUTCOME_UPDATED and emb.texts[-1] == "ada lives in Rome"
    # A value seen before but no longer current is a new version again: embedded then.
    r = st.assert_fact("t", FactIn("u", "", "ada", "lives_in", "Paris"))
    assert r.outcome == pb.WRITE_OUTCOME_UPDATED and r.version.embedding
    # Free text is embedded as the statement itself.
    st.assert_fact("t", FactIn("u", "", "Ada", "", "Ada likes jazz"))
    assert emb.texts[-1] == "Ada likes jazz"


def test_record_time_never_goes_back_on_a_key(tmp_path, monkeypatch):
    from datetime import timedelta

    import versioning_service.facts.base as facts

    st, _ = store(tmp_path)
    r1 = st.assert_fact("t", FactIn("u", "", "s", "p", "one"))
    real = facts.utcnow
    monkeypatch.setattr(facts, "utcnow", lambda: real() - timedelta(hours=1))  # clock steps back
    r2 = st.assert_fact("t", FactIn("u", "", "s", "p", "two"))
    assert r2.version.record_time >= r1.version.record_time
    rows, _ = st.history("t", "u", "", "s", "p")
    assert all(v.record_end_time is None or v.record_end_time >= v.record_time for v in rows)
