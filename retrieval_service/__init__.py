"""memlake.v1.RetrievalService: index (tails the change log), ranking, context."""
