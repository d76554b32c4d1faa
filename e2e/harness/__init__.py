"""Helpers for the end-to-end suite: processes, configs, clients, SSE, schemas."""
