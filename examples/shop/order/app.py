"""The shop's order service: takes orders (POST /orders, through its sidecar:
`POST /v1.0/invoke/order/method/orders`), keeps each in the state store and publishes it on
topic `orders`. With ORDER_EVERY (seconds, default 1; 0 turns it off) it also places an order of
its own that often, so the dashboards have something to show.
"""

import itertools
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Seen, dapr, log, serve, wait_for_sidecar  # noqa: E402

ITEMS = ["book", "lamp", "kettle", "chair", "tent", "bicycle"]
seen = Seen("placed")
numbers = itertools.count(1)


def place(order):
    order = dict(order or {})
    order.setdefault("id", f"o-{next(numbers)}")
    order.setdefault("item", random.choice(ITEMS))
    order.setdefault("qty", random.randint(1, 3))
    status, answer = dapr("POST", "/v1.0/state/statestore", [{"key": f"order-{order['id']}", "value": order}])
    if status // 100 != 2:
        return 502, {"error": f"saving the order: {status} {answer}"}
    status, answer = dapr("POST", "/v1.0/publish/pubsub/orders", order)
    if status // 100 != 2:
        return 502, {"error": f"publishing the order: {status} {answer}"}
    seen.add("placed", order["id"])
    return 200, {"id": order["id"]}


def generate(every):
    wait_for_sidecar()
    while True:
        status, answer = place({})
        if status != 200:
            log("could not place an order:", answer)
        time.sleep(every)


every = float(os.environ.get("ORDER_EVERY", "1"))
if every > 0:
    threading.Thread(target=generate, args=(every,), daemon=True).start()
serve({("POST", "/orders"): place, ("GET", "/stats"): lambda _: (200, seen.stats())})
