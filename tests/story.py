"""The story's examples, verbatim (US-0002-03), shared by the tests that compare against them."""

from __future__ import annotations

import json
from typing import Any

# "Domain Event: CustomerRegistered"
STORY_CUSTOMER_REGISTERED: dict[str, Any] = json.loads("""
{
  "eventId": "01941234-5678-7abc-def0-123456789010",
  "eventType": "CustomerRegistered",
  "eventVersion": "1.0",
  "timestamp": "2026-01-02T10:30:02Z",
  "aggregateId": "01941234-5678-7abc-def0-123456789020",
  "aggregateType": "Customer",
  "correlationId": "01941234-5678-7abc-def0-123456789002",
  "causationId": "01941234-5678-7abc-def0-123456789001",
  "payload": {
    "customerId": "01941234-5678-7abc-def0-123456789020",
    "userId": "01941234-5678-7abc-def0-123456789abc",
    "customerNumber": "ACME-202601-000142",
    "email": "customer@example.com",
    "firstName": "Jane",
    "lastName": "Doe",
    "status": "PENDING_VERIFICATION",
    "type": "INDIVIDUAL",
    "registeredAt": "2026-01-02T10:30:02Z"
  }
}
""")
