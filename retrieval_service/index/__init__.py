"""The derived search index (see partition.py for what a partition holds).

partition.py: one scope's rows, vectors, postings and columns, its writes and its files.
candidates.py: what a query reads of a partition: filter mask, lexical and dense scores,
  neighbour smoothing, candidate rows (exact, or by the graph).
graph.py: a partition's HNSW graph, whose storage is the partition's rows.
storage.py: bfloat16 vectors, coded string columns, compact id -> row / key maps, blobs
  for texts and documents, and the arena packed small partitions share.
manager.py: the partitions a replica holds and the change-log tailer; small partitions
  (at most pack_rows memories) are held packed in the arena while no query or write uses
  them, and decoded on their next use (a tiny partition decoded is some 14 KB of objects).
adoption.py: building the partitions a replica comes to own, by scope, from the database.
snapshots.py: incremental, crash-safe snapshot files and lazy loading.
"""

from retrieval_service.index.candidates import Candidates, Filters, Smoothing
from retrieval_service.index.graph import HNSW_EF_CONSTRUCTION, HNSW_M
from retrieval_service.index.manager import (
    IndexManager,
    build_from_settings,
    rebuild,
    smoothing_from,
)
from retrieval_service.index.partition import COLUMNS, STRINGS, Partition, partition_key

__all__ = [
    "COLUMNS",
    "HNSW_EF_CONSTRUCTION",
    "HNSW_M",
    "STRINGS",
    "Candidates",
    "Filters",
    "IndexManager",
    "Partition",
    "Smoothing",
    "build_from_settings",
    "partition_key",
    "rebuild",
    "smoothing_from",
]
