"""Configuration, read once from MEMLAKE_* environment variables (documented in README)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMLAKE_", extra="ignore")

    # Where the embedded default keeps its SQLite file and index snapshots.
    data_dir: Path = Path(".memlake")
    # Empty: SQLite in data_dir. Otherwise a SQLAlchemy URL, e.g.
    # postgresql+psycopg://user@127.0.0.1:5432/memlake
    database_url: str = ""
    # Empty: in-process cache. Otherwise e.g. redis://127.0.0.1:6379/0
    redis_url: str = ""
    # Prefix of this install's Redis keys and pub/sub channels (channels are global across
    # Redis databases). Empty: derived from the database URL, so installs on different
    # databases never hear each other's changes; the services of one install agree.
    redis_namespace: str = ""

    # host:port of the all-in-one server. Clients (`memlake`, the MCP server) read the same
    # MEMLAKE_ADDR to find it; when set it overrides MEMLAKE_HOST/MEMLAKE_ALLINONE_PORT for
    # `memlake serve`.
    addr: str = ""
    host: str = "127.0.0.1"
    # All-in-one and ingest share 50051 (they are never run on one machine together
    # unless the ports are changed).
    allinone_port: int = 50051
    ingest_port: int = 50051
    retrieval_port: int = 50052
    versioning_port: int = 50053
    metrics_host: str = "127.0.0.1"
    allinone_metrics_port: int = 9464
    ingest_metrics_port: int = 9464
    retrieval_metrics_port: int = 9465
    versioning_metrics_port: int = 9466
    # HTTP/JSON (Connect protocol) for every RPC, served by the all-in-one beside gRPC and
    # by `memlake serve --service gateway`; -1 turns it off.
    http_port: int = 8080
    # Where `memlake serve --service gateway` forwards calls: retrieval and versioning calls
    # to their addresses, every other service (ingest, ...) to gateway_upstream_addr.
    gateway_upstream_addr: str = "127.0.0.1:50051"
    gateway_retrieval_addr: str = "127.0.0.1:50052"
    gateway_versioning_addr: str = "127.0.0.1:50053"
    # Where ingest sends FACT items; empty means 127.0.0.1:<versioning_port>
    # (the all-in-one process points it at itself).
    versioning_addr: str = ""

    default_tenant: str = "default"

    # Authentication (README "Security"). Off only on a loopback host, and said loudly.
    auth_enabled: bool = True
    # A revoked key stops working on every replica within this many seconds.
    auth_cache_ttl_s: float = 5.0
    # scrypt cost (N) of stored key hashes; 16384 takes about 40 ms per check, once per key
    # and process.
    auth_hash_n: int = 16384
    # Longest life of a key minted by a MEMBER key.
    auth_max_minted_ttl_s: float = 86400.0
    # First start: the OPERATOR bootstrap key is created once, printed once, and written to
    # this file (default: <data_dir>/admin.key, mode 0600). MEMLAKE_BOOTSTRAP_KEY presets it
    # (mlk_bootstrap_<43 chars>), e.g. from a Kubernetes Secret.
    bootstrap_key_file: str = ""
    bootstrap_key: str = ""
    # Shared by separate services so ingest can act for a certificate caller on versioning.
    internal_token: str = ""
    # TLS: server certificate and key; with a client CA, mutual TLS (tenant = the client
    # certificate's common name). tls_ca_file verifies servers on the services' own hops.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    tls_ca_file: str = ""
    tls_server_name: str = ""
    # Behind a mesh that terminates mTLS: take the tenant from x-forwarded-client-cert.
    trust_mesh_identity: bool = False
    # Default conflict policy for facts: SUPERSEDE, REJECT or REVIEW (a tenant may set its
    # own with SetConflictPolicy / `memlake fact policy`).
    default_conflict_policy: str = "SUPERSEDE"
    # Free-text facts: a new one whose embedding cosine with a believed fact of the same
    # subject is at least this is queued for review as a candidate conflict. Measured by
    # bench/fact_threshold.py with all-MiniLM-L6-v2 (int8) on tests/data/fact_pairs.jsonl
    # (56 pairs, 26 contradictions): at 0.75 precision 0.760, recall 0.731, F1 0.745,
    # accuracy 0.768 (best F1 of 0.20..0.95; 0.70: P 0.600 R 0.808; 0.80: P 0.778 R 0.538).
    # Paraphrases score above 0.9 and are flagged too: a reviewer DISMISSes them.
    fact_semantic_threshold: float = 0.75

    # Embedder: "minilm" (default, all-MiniLM-L6-v2 on ONNX Runtime) or "hash"
    # (deterministic lexical hashing; for unit tests only).
    embedder: str = "minilm"
    # "auto" takes fp32 wherever installed (shared/cpu.py: fewest CPU-seconds on every CPU
    # measured), else int8; or "int8" / "fp32" / "q8" (MEMLAKE_EMBED_PRECISION).
    embed_precision: str = "auto"
    # Intra-op threads per embedding call; 1 is fastest for a single query on these VMs.
    embed_threads: int = 1
    # Batches embedded at once for bulk writes (each on one thread); 0 = one per core.
    embed_workers: int = 0
    # Writes yield the CPU to searches: a process serving only writes (ingest or
    # versioning alone) lowers its priority by this nice increment (19: the lowest), and
    # in a process that also searches, write batches run on embedding threads niced so
    # while a search's query runs at once at full priority (shared/batching.py); 0: off.
    writer_nice: int = 19
    # All-in-one: write batches in a child process niced by writer_nice rather than on
    # niced threads, whose turns holding the GIL stall the searches (off: not yet measured
    # on a quiet machine; on a loaded one it cost write throughput).
    writer_child: bool = False

    # Index: exact search up to this many vectors in a partition, HNSW above.
    ann_threshold: int = 20000
    # A partition of at most this many memories is held packed (its rows as bytes, about
    # 1 KB a memory instead of 14 KB of Python objects for a tiny partition) once no query
    # or write used it for index_pack_idle_s seconds, and decoded again on its next use
    # (measured 1.3 ms for one LoCoMo turn, 34 ms for 64, at load 16). 0: never packed.
    index_pack_rows: int = 64
    index_pack_idle_s: float = 10.0
    # A turn's vector is the mean of its own embedding and its window's: the word-count
    # weighted mean of the own embeddings of the turn and this many turns before it (no
    # extra model run). 0: its own only. LoCoMo dev with audit (bench/locomo.py, alpha
    # 0.5): 2 gives recall@5 0.752, @10 0.821; 3 gave 0.751/0.815 (unweighted mean); the
    # earlier embedding of the window's text (three turns long) gave 0.761/0.817 at a
    # quarter of the ingest rate.
    dense_window: int = 2
    # A conversation turn is indexed for BM25 with this many turns before it.
    lexical_window: int = 1
    # Ranking weights, measured on LoCoMo dev (bench/locomo.py --ablate shows each one's part).
    rank_alpha: float = 0.5  # dense share of the fused score (cosine vs BM25 / its bound)
    rank_speaker_boost: float = 0.6
    rank_date_boost: float = 0.5
    rank_time_boost: float = 0.3
    rank_howto_boost: float = 0.3  # SKILL items for "how do I ..." questions
    rank_question_factor: float = 0.85  # a turn that asked what a later turn answered
    rank_echo_penalty: float = 0.5  # a memory whose words are mostly the query's scores less
    rank_echo_share: float = 0.3  # ... from this share of its words being the query's
    rank_dense_keep: int = 1  # the best this many by cosine alone stay in the first ten
    # A REFLECTION goes just below its evidence that scores this share of it; 0: off.
    rank_evidence_share: float = 0.5
    rank_gate_lo: float = 0.05  # lexical counts from this cosine, fully from rank_gate_hi
    rank_gate_hi: float = 0.25
    rank_dense_next: float = 0.3  # neighbour smoothing
    rank_lexical_prev: float = 0.5
    rank_window_weight: float = 1.5  # BM25 of a turn's window document
    # A turn concluding an exchange (its speaker asked two turns before, another answered)
    # takes at least this share of the question's dense and lexical scores; 0: off.
    rank_outcome: float = 1.0
    snapshot_interval_s: float = 30.0
    # Retrieval replicas sharing the index partitions (retrieval_service/membership.py).
    # On when replica_address or replica_peer_template ("{ordinal}" replaced) gives the
    # address peers reach this replica at. The ordinal is replica_ordinal, or when -1 the
    # suffix of pod_name (a StatefulSet pod's name). Which replicas are in the ring is
    # agreed in the database: no replica count to configure.
    replica_ordinal: int = -1
    pod_name: str = ""
    replica_address: str = ""
    replica_peer_template: str = ""
    # A member renews its heartbeat this often; one silent for membership_ttl_s has left
    # (its partitions move to the others).
    membership_heartbeat_s: float = 1.0
    membership_ttl_s: float = 10.0
    # A replica that stopped owning a partition keeps serving it this long (peers still
    # routing by the previous ring reach it), then drops it.
    handover_grace_s: float = 5.0
    # On SIGTERM, wait (within the shutdown grace) until the others have taken over this
    # replica's partitions. Off: a restart keeps its partitions (a scale-down is then
    # noticed when the heartbeat expires; peers build its partitions on demand meanwhile).
    handover_on_stop: bool = True
    # A partition this replica does not own but had to serve (its owner unreachable, or
    # a forwarded call during an ownership move) is dropped after this long unused.
    borrowed_idle_s: float = 120.0
    tail_poll_interval_s: float = 0.2
    # The index applies the change log in rounds at least this far apart (seconds), so
    # a stream of writes costs one round per gap, not one per write; a search passing
    # min_seq never waits for it, one without sees a write up to this much later.
    # 0: every wake-up applies at once (a read right after a write without min_seq
    # usually sees it; tests rely on that).
    tail_apply_gap_s: float = 0.0

    # Memories past their expire_time are never returned; this often (seconds) the ingest
    # process also deletes them everywhere (0: never).
    expiry_sweep_interval_s: float = 60.0

    # Hot tail of an active session kept in the cache.
    session_tail_size: int = 20
    session_tail_ttl_s: int = 24 * 3600
    # GetContext places this many of the active session's newest turns right after
    # BACKGROUND, before the items relevant to the intent, so they always fit the budget.
    context_tail_first: int = 3

    # OpenTelemetry: an OTLP gRPC collector, e.g. http://otel-collector:4317; empty: no tracing.
    otlp_endpoint: str = ""
    otlp_insecure: bool = True

    max_workers: int = 16
    # How long (ms) a thread may hold the GIL while another waits (CPython's default 5).
    gil_switch_ms: float = 0.0  # 0: leave Python's default
    # One maximum gRPC message size (bytes) for every server, internal client and the SDK.
    max_message_bytes: int = 16 * 1024 * 1024

    # Per-tenant limits, each answered RESOURCE_EXHAUSTED with a RetryInfo; 0 turns one off.
    # The rate is a token bucket (in Redis when redis_url is set, shared by every replica;
    # in-process otherwise) refilled at rate_limit_per_s up to rate_limit_burst tokens
    # (0: one second's worth). Calls in flight are counted per process.
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 0
    max_concurrent_per_tenant: int = 0

    # Postgres guards (seconds). A write waits at most db_lock_timeout_s for a row or key
    # lock; a statement runs at most the call's remaining deadline, or
    # db_statement_timeout_s without one; a transaction left idle is ended by the server.
    db_lock_timeout_s: float = 2.0
    db_statement_timeout_s: float = 30.0
    db_idle_in_transaction_timeout_s: float = 10.0
    # How long a call waits for a pooled connection before UNAVAILABLE.
    db_pool_timeout_s: float = 5.0
    shutdown_grace_s: float = 10.0
    health_check_interval_s: float = 2.0
    # A dependency check without an answer in this time counts as failed.
    health_check_timeout_s: float = 2.0
    log_level: str = "INFO"
    log_requests: bool = True

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'memlake.db').resolve()}"

    def resolved_redis_namespace(self) -> str:
        if self.redis_namespace:
            return self.redis_namespace
        url = self.sqlalchemy_url()
        if "@" in url:  # no password in the hash input, only where the data lives
            url = url.split("://", 1)[0] + "://" + url.rsplit("@", 1)[1]
        return hashlib.sha256(url.encode()).hexdigest()[:12]

    def resolved_versioning_addr(self) -> str:
        return self.versioning_addr or f"127.0.0.1:{self.versioning_port}"

    def key_file(self) -> Path:
        return (
            Path(self.bootstrap_key_file)
            if self.bootstrap_key_file
            else self.data_dir / "admin.key"
        )

    def index_dir(self) -> Path:
        return self.data_dir / "index"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
