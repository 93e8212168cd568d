-- One registration per transaction, as the service's unit of work writes it (adapters/postgres.py):
-- the month's counter (row lock held to commit), the customer, its preferences, its
-- CustomerRegistered in the event store, the processed input eventId. The envelope placeholder is replaced
-- by a real CustomerRegistered envelope (benchmarks/limits.py), so the event row has its real size.
\set month random(1, 2)
BEGIN;
INSERT INTO customer_number_sequences AS s (year_month, current_value) VALUES ('20260' || :month::text, 1)
  ON CONFLICT (year_month) DO UPDATE SET current_value = s.current_value + EXCLUDED.current_value
  RETURNING current_value \gset
INSERT INTO customers (id, user_id, customer_number, first_name, last_name, display_name, email, email_verified,
    status, type, preferred_locale, timezone, preferred_currency, profile_completeness, registered_at,
    last_activity_at)
  VALUES (gen_random_uuid(), gen_random_uuid(), 'ACME-20260' || :month::text || '-' || lpad(:current_value::text, 6, '0'),
    'Jane', 'Doe', 'Jane Doe', 'jane.doe.' || :month::text || '.' || :current_value::text || '@example.com', FALSE,
    'PENDING_VERIFICATION', 'INDIVIDUAL', 'en-US', 'UTC', 'USD', 25, NOW(), NOW())
  RETURNING id AS customer_id \gset
INSERT INTO customer_preferences (customer_id, email_notifications, sms_notifications, push_notifications,
    marketing_communications, share_data_with_partners, allow_analytics)
  VALUES (:customer_id, TRUE, FALSE, FALSE, FALSE, FALSE, TRUE);
INSERT INTO event_store (event_id, event_type, event_version, aggregate_type, aggregate_id, aggregate_version,
    correlation_id, causation_id, occurred_at, envelope)
  VALUES (gen_random_uuid(), 'CustomerRegistered', '1.0', 'Customer', :customer_id, 1, gen_random_uuid(),
    gen_random_uuid(), NOW(), @ENVELOPE@);
INSERT INTO processed_events (event_id, event_type, customer_id) VALUES (gen_random_uuid(), 'UserRegistered', :customer_id);
COMMIT;
