"""The shop's notification service: tells the customer about every order published on topic
`orders`, and tries to add the customer's balance from billing (`GET /balance`), which billing's
access policy forbids: the mesh answers 403 and billing's dashboard lists the denial.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Seen, dapr, log, orders_subscription, serve  # noqa: E402

seen = Seen("notified", "billingDenied", "billingAnswered")


def notify(event):
    order = event["data"]
    seen.add("notified", order["id"])
    status, _ = dapr("GET", "/v1.0/invoke/billing/method/balance")
    if status == 403:
        seen.add("billingDenied", order["id"])
    else:
        seen.add("billingAnswered", order["id"])
        log(f"billing answered {status}, not the 403 of its policy")
    return 200, {"status": "SUCCESS"}


serve(
    {("POST", "/orders"): notify, ("GET", "/stats"): lambda _: (200, seen.stats())},
    [orders_subscription()],
)
