"""Adapters: one module per backend (PostgreSQL, MongoDB, Kafka codec and publisher)."""
