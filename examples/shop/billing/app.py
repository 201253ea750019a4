"""The shop's billing service: charges every order published on topic `orders`, then asks
shipping to ship it, by service invocation (`POST /v1.0/invoke/shipping/method/ship`). Its access
policy (config/billing.yaml) refuses every call from notification.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Seen, dapr, orders_subscription, serve  # noqa: E402

seen = Seen("charged", "shipRequested")
balance = {"total": 0}


def charge(event):
    order = event["data"]
    seen.add("charged", order["id"])
    balance["total"] += order.get("qty", 1)
    status, answer = dapr("POST", "/v1.0/invoke/shipping/method/ship", {"orderId": order["id"]})
    if status // 100 != 2:
        # Not acknowledged: the broker delivers the order again.
        return 500, {"error": f"shipping answered {status}: {answer}"}
    seen.add("shipRequested", order["id"])
    return 200, {"status": "SUCCESS"}


serve(
    {
        ("POST", "/orders"): charge,
        ("GET", "/balance"): lambda _: (200, balance),
        ("GET", "/stats"): lambda _: (200, seen.stats()),
    },
    [orders_subscription()],
)
