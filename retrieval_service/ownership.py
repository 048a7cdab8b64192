"""Which retrieval replica owns which index partition: rendezvous (highest random weight)
hashing of the partition key over the ordinals of the replicas in a ring.

A partition is (tenant, "u:<user>") or (tenant, "a:<agent>") (see index.partition_key).
Rendezvous hashing moves only the partitions a new member wins when one joins (and only
the leaving member's when one leaves), so going from 2 to 3 replicas moves about a third
of the partitions, all to the new one, and the others keep what they had.

Which replicas are in the ring is not configuration: it is agreed on in the database
(retrieval_service/membership.py), so the ring changes while the replicas run. A replica
sees two rings: the serving ring, by which queries are routed, and the target ring (the
live members), whose partitions each member builds before the target becomes the serving
ring. A replica holds (applies the change log to, snapshots) what it owns in either.
On Kubernetes the ordinal is the StatefulSet pod name's suffix and peers are reached
through the headless Service (settings: replica_* below).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

PARTITION_HEADER = "x-memlake-partition"  # "<tenant>/<key>": a mesh may hash on it
OWNER_HEADER = "x-memlake-owner"  # the owner's ordinal, on forwarded calls
FORWARDED_HEADER = "x-memlake-forwarded"  # set on a forwarded call: answer, never forward


@lru_cache(maxsize=1 << 17)
def _weight(member: int, pkey: str) -> int:
    digest = hashlib.blake2b(f"{member}\x1f{pkey}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def partition_header(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass(frozen=True)
class Ring:
    """A set of member ordinals at an epoch (the database's version of the ring)."""

    members: tuple[int, ...] = (0,)
    epoch: int = 0

    def owner(self, key: tuple[str, str]) -> int:
        if len(self.members) == 1:
            return self.members[0]
        pkey = key[0] + "\x1f" + key[1]
        return max(self.members, key=lambda m: _weight(m, pkey))


@dataclass(frozen=True)
class View:
    """What one replica knows of the rings: its ordinal, the serving and target rings, and
    the members' addresses. A single replica (the default) is the ring {0}."""

    ordinal: int = 0
    serving: Ring = Ring()
    target: Ring = Ring()
    addresses: dict[int, str] = field(default_factory=dict, compare=False, hash=False)
    dynamic: bool = False  # from the membership table (False: one replica, no peers)

    @property
    def sharded(self) -> bool:
        return self.dynamic

    def owner(self, key: tuple[str, str]) -> int:
        """The replica that answers for key now (the serving ring's owner)."""
        return self.serving.owner(key)

    def owns(self, key: tuple[str, str]) -> bool:
        """This replica holds key: it owns it in the serving or in the target ring."""
        return self.serving.owner(key) == self.ordinal or self.target.owner(key) == self.ordinal

    def address(self, ordinal: int) -> str:
        return self.addresses[ordinal]

    def peers(self) -> list[int]:
        """The replicas an unscoped query asks: serving and target members. A target
        member may already be serving in a ring this replica has not read yet, so asking
        it too keeps a fan-out whole while the rings move (copies are counted once)."""
        return sorted({*self.serving.members, *self.target.members} - {self.ordinal})

    def describe(self) -> dict:
        return {
            "ordinal": self.ordinal,
            "serving": list(self.serving.members),
            "target": list(self.target.members),
        }


def ordinal_from_pod_name(name: str) -> int:
    """'memlake-retrieval-2' -> 2 (a StatefulSet pod's name ends in its ordinal)."""
    tail = name.rsplit("-", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"pod name {name!r} does not end in a StatefulSet ordinal")
    return int(tail)


def identity_from_settings(s) -> tuple[int, str] | None:
    """(ordinal, the address peers reach this replica at) when this replica shares the
    partitions with others; None for a replica on its own. The address is replica_address,
    or replica_peer_template with '{ordinal}' replaced; the ordinal is replica_ordinal or,
    when that is -1, the suffix of pod_name."""
    if not (s.replica_address or s.replica_peer_template):
        return None
    ordinal = s.replica_ordinal if s.replica_ordinal >= 0 else ordinal_from_pod_name(s.pod_name)
    address = s.replica_address
    if not address:
        if "{ordinal}" not in s.replica_peer_template:
            raise ValueError("MEMLAKE_REPLICA_PEER_TEMPLATE must contain '{ordinal}'")
        address = s.replica_peer_template.format(ordinal=ordinal)
    return ordinal, address
