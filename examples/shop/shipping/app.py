"""The shop's shipping service: prepares a parcel for every order published on topic `orders`,
and ships it when billing asks (`POST /ship`, invoked through the mesh).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Seen, orders_subscription, serve  # noqa: E402

seen = Seen("prepared", "shipped")


def prepare(event):
    seen.add("prepared", event["data"]["id"])
    return 200, {"status": "SUCCESS"}


def ship(request):
    seen.add("shipped", request["orderId"])
    return 200, {"shipped": request["orderId"]}


serve(
    {
        ("POST", "/orders"): prepare,
        ("POST", "/ship"): ship,
        ("GET", "/stats"): lambda _: (200, seen.stats()),
    },
    [orders_subscription()],
)
