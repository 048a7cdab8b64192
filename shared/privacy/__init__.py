"""Erasure and export of what memlake holds about a subject, across every table, the cache
and (through the change log) the search index. No grpc here.

- `stores`: the per-store steps (delete memories with their change-log rows, erase fact
  keys, redact audit rows and idempotency responses, drop cache tails);
- `erase`: Forget of a fact, EraseSubject (a crash-safe job) and the expiry sweep;
- `export`: a subject as JSON lines, and importing them into another install.
"""
