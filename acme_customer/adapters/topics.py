"""Creates the contract's topics when they are missing (local stack and tests; in production
the platform owns them)."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from acme_customer.adapters.kafka import CUSTOMER_EVENTS, CUSTOMER_EVENTS_DLQ, USER_EVENTS, USER_EVENTS_DLQ
from acme_customer.errors import AcmeCustomerError


async def ensure_topics(bootstrap_servers: str, partitions: int = 12, dlq_partitions: int = 1) -> list[str]:
    """Create the missing topics of the contract; return the names created."""
    wanted = {
        USER_EVENTS: partitions,
        CUSTOMER_EVENTS: partitions,
        USER_EVENTS_DLQ: dlq_partitions,
        CUSTOMER_EVENTS_DLQ: dlq_partitions,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            # the DLQ takes whatever the input topic took, up to the input's own size limit
            NewTopic(name, count, 1, topic_configs={"max.message.bytes": str(4 * 1024 * 1024)})
            for name, count in wanted.items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, from the broker (a consumer without a subscription knows none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description.get("error_code"):
        raise AcmeCustomerError(f"topic {topic} cannot be described (error {description['error_code']})")
    return [TopicPartition(topic, partition["partition"]) for partition in description["partitions"]]
