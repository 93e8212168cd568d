"""The Kafka edge: consumed records in, the use cases called, acknowledgements and dead letters out.

Partitions, offsets, acknowledgement order, retries and DLQ routing live here; the service
layer below sees validated events and returns outcomes.
"""
