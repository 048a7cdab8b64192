"""Facts: assertion with conflict detection and policies, retraction, conflict resolution,
subject aliases, the tenant's default policy, and the reads (current, history, as-of,
list). No grpc.

A fact's key is (scope, subject, predicate) after normalisation (case, whitespace, and the
subject aliases registered for the scope). An assertion is compared with what is believed
for its key:

- same value as the version true at its valid_from: a DUPLICATE (its source is added);
- a different value over an overlapping valid interval: a conflict, decided by the policy
  (the request's, else the tenant's default, else the server's):
  SUPERSEDE: the later valid_from wins: the version it falls in is closed at its
  valid_from; an assertion older than a believed version is RECORDED_AS_HISTORY, valid
  until the next one begins;
  REJECT: FAILED_PRECONDITION with the current version in the error details;
  REVIEW: both kept as CONFLICTED, the key marked conflicted, a conflict queued.
- free-text facts (no predicate) each have their own key; a new one that is close in
  meaning (embedding cosine >= the measured threshold) to a believed fact of the same
  subject is a candidate conflict and is always queued for review (similarity is not proof).

Concurrency: every write locks its key row first (SELECT ... FOR UPDATE on Postgres;
SQLite serialises writers with BEGIN IMMEDIATE), then reads, then takes its record time,
so record times on a key only go forward and racing writers form one consistent chain.
"""

from versioning_service.facts.aliases import Aliases
from versioning_service.facts.assertions import Assertions
from versioning_service.facts.model import (
    AssertResult,
    FactIn,
    Page,
    page_limit,
    parse_policy,
    policy_name,
    status_name,
    validate,
)
from versioning_service.facts.reads import Reads
from versioning_service.facts.review import Review


class FactStore(Assertions, Review, Aliases, Reads):
    """Facts of every tenant in one database (see the module docstring)."""


__all__ = [
    "AssertResult",
    "FactIn",
    "FactStore",
    "Page",
    "page_limit",
    "parse_policy",
    "policy_name",
    "status_name",
    "validate",
]
