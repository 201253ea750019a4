"""Browses for Outrider sidecars with python-zeroconf, an mDNS implementation Outrider does not
share code with, and prints the first instance of app `argv[1]` as JSON (name, port, addresses,
TXT properties). Exits 1 if none is found within `argv[2]` seconds (default 15).

Used by tests/e2e/tests/discovery.rs inside a network namespace: it proves the announcements
are standard DNS-SD records.
"""

import json
import sys
import threading

from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

SERVICE_TYPE = "_outrider._tcp.local."


class Listener(ServiceListener):
    def __init__(self, app_id):
        self.app_id = app_id
        self.found = threading.Event()
        self.result = {}

    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=3000)
        if info is None:
            return
        props = {
            k.decode(): (v.decode() if v is not None else None)
            for k, v in info.properties.items()
        }
        if props.get("app-id") != self.app_id:
            return
        self.result = {
            "name": name,
            "port": info.port,
            "server": info.server,
            "addresses": info.parsed_addresses(),
            "properties": props,
        }
        self.found.set()

    def update_service(self, zc, type_, name):
        self.add_service(zc, type_, name)

    def remove_service(self, zc, type_, name):
        pass


def main():
    app_id = sys.argv[1]
    limit = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
    zc = Zeroconf()
    listener = Listener(app_id)
    ServiceBrowser(zc, SERVICE_TYPE, listener)
    found = listener.found.wait(limit)
    zc.close()
    if not found:
        print(f"no instance of {app_id} in {SERVICE_TYPE} within {limit} s", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(listener.result))


if __name__ == "__main__":
    main()
