"""Sends one event of each type with segment-analytics-python to a Switchyard server.

usage: send_python.py HOST WRITE_KEY GZIP(0|1) PREFIX
Message ids are PREFIX-<type>. Exits non-zero if the SDK reported any error.
"""
import sys
import datetime

from segment.analytics.client import Client

host, write_key, gzip, prefix = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
errors = []
client = Client(write_key=write_key, host=host, gzip=gzip, max_retries=2,
                on_error=lambda e, batch: errors.append(repr(e)))
ts = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
client.track(user_id=f"{prefix}-user", event="Order Completed", properties={"revenue": 12.5},
             timestamp=ts, message_id=f"{prefix}-track")
client.identify(user_id=f"{prefix}-user", traits={"email": "py@example.com"}, message_id=f"{prefix}-identify")
client.page(user_id=f"{prefix}-user", category="Docs", name="Home", properties={"path": "/"},
            message_id=f"{prefix}-page")
client.group(user_id=f"{prefix}-user", group_id="g-1", traits={"name": "Acme"}, message_id=f"{prefix}-group")
client.alias(previous_id=f"{prefix}-anon", user_id=f"{prefix}-user", message_id=f"{prefix}-alias")
client.flush()
client.join()
if errors:
    print("SDK errors:", errors, file=sys.stderr)
    sys.exit(1)
