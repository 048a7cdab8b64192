"""memlake.v1.VersioningService: bi-temporal facts, conflicts, audit."""
