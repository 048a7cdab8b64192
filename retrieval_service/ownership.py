"""Which retrieval replica owns which index partition: rendezvous (highest random weight)
hashing of the partition key over the replica ordinals 0..count-1.

A partition is (tenant, "u:<user>") or (tenant, "a:<agent>") (see index.partition_key).
Rendezvous hashing moves only the partitions the new member wins when the count grows
(and only the leaving member's when it shrinks), so going from 2 to 3 replicas moves
about a third of the partitions, all to replica 2, and the others keep what they had.
On Kubernetes the ordinal is the StatefulSet pod name's suffix and peers are reached
through the headless Service (settings: replica_* below).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

PARTITION_HEADER = "x-memlake-partition"  # "<tenant>/<key>": a mesh may hash on it
OWNER_HEADER = "x-memlake-owner"  # the owner's ordinal, for header-match routes
FORWARDED_HEADER = "x-memlake-forwarded"  # set on a forwarded call: answer, never forward


@lru_cache(maxsize=1 << 17)
def _weight(member: int, pkey: str) -> int:
    digest = hashlib.blake2b(f"{member}\x1f{pkey}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def partition_header(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass(frozen=True)
class Ring:
    ordinal: int = 0
    count: int = 1
    addresses: tuple[str, ...] = ()  # peer address by ordinal (may include this replica)

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.ordinal < self.count:
            raise ValueError(f"replica ordinal {self.ordinal} is outside 0..{self.count - 1}")
        if self.count > 1 and len(self.addresses) != self.count:
            raise ValueError(f"{self.count} replicas need {self.count} peer addresses")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owner(self, key: tuple[str, str]) -> int:
        if self.count == 1:
            return 0
        pkey = key[0] + "\x1f" + key[1]
        return max(range(self.count), key=lambda m: _weight(m, pkey))

    def owns(self, key: tuple[str, str]) -> bool:
        return self.owner(key) == self.ordinal

    def address(self, ordinal: int) -> str:
        return self.addresses[ordinal]

    def peers(self) -> list[int]:
        return [i for i in range(self.count) if i != self.ordinal]

    def describe(self) -> dict:
        return {"ordinal": self.ordinal, "count": self.count}


def ordinal_from_pod_name(name: str) -> int:
    """'memlake-retrieval-2' -> 2 (a StatefulSet pod's name ends in its ordinal)."""
    tail = name.rsplit("-", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"pod name {name!r} does not end in a StatefulSet ordinal")
    return int(tail)


def ring_from_settings(s) -> Ring:
    """replica_peers (comma-separated, by ordinal) or replica_count with
    replica_peer_template ('{ordinal}' replaced); the ordinal from replica_ordinal or,
    when that is -1, from pod_name."""
    peers = tuple(a.strip() for a in s.replica_peers.split(",") if a.strip())
    count = len(peers) if peers else s.replica_count
    if count <= 1:
        return Ring()
    ordinal = s.replica_ordinal if s.replica_ordinal >= 0 else ordinal_from_pod_name(s.pod_name)
    if not peers:
        if "{ordinal}" not in s.replica_peer_template:
            raise ValueError("MEMLAKE_REPLICA_PEER_TEMPLATE must contain '{ordinal}'")
        peers = tuple(s.replica_peer_template.format(ordinal=i) for i in range(count))
    return Ring(ordinal, count, peers)
