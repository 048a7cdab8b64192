"""memlake.v1.IngestService: validate, embed, write."""
