#!/usr/bin/env python3
"""A minimal adapter for ember, in Python with the standard library only: it says hello,
subscribes, and prints every change of every service as it happens; a line such as
"restart web" on its standard input is sent to ember as a command. Any other transport
(a web page, CoAP, ubus) is this loop with another end.

    ./watch.py /run/ember/control.sock

Run it as root, or as a user that a [[control.allow]] rule of ember.toml admits (with
"status" and "subscribe"; and "restart" for the commands).
"""
import json
import socket
import sys
import threading
import time

SOCKET = sys.argv[1] if len(sys.argv) > 1 else "/run/ember/control.sock"


def connect():
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(SOCKET)
    return conn, conn.makefile("r", encoding="utf-8")


def call(command):
    """One request, one reply (each line one JSON object)."""
    conn, lines = connect()
    with conn:
        conn.sendall((json.dumps(command) + "\n").encode())
        return json.loads(lines.readline())


def show(service):
    pid = service.get("pid") or "-"
    print(f"{service['name']}: {service['state']} ({service['sub_state']}) pid {pid}"
          f" seq {service['seq']}", flush=True)


def commands():
    """'restart web' on stdin becomes {"cmd":"restart","names":["web"]}."""
    for line in sys.stdin:
        words = line.split()
        if len(words) >= 2:
            reply = call({"cmd": words[0], "names": words[1:]})
            print("reply:", json.dumps(reply), flush=True)


hello = call({"cmd": "hello", "protocol": 1, "client": "watch.py"})["hello"]
print(f"ember {hello['ember']} on {hello['device']}, protocol {hello['protocol']}",
      flush=True)
threading.Thread(target=commands, daemon=True).start()

def stream():
    """The subscription's lines; subscribed again when ember closes it (a reexec closes
    every connection, and the new binary answers on the same socket)."""
    while True:
        for _ in range(600):  # a minute for ember to answer again
            try:
                conn, lines = connect()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("ember stopped")
        conn.sendall(b'{"cmd":"subscribe"}\n')
        yield from lines
        print("ember closed the stream; subscribing again", flush=True)


last = 0
for line in stream():
    message = json.loads(line)
    if "snapshot" in message:
        # Everything as it is, up to change number `seq`: start (again) from here.
        last = message["snapshot"]["seq"]
        for service in message["snapshot"]["services"]:
            show(service)
    elif "event" in message:
        event = message["event"]
        for kind in ("service", "system"):
            if kind in event:
                # Changes come numbered one after the other; ember says when some were
                # dropped for a slow reader ("lagged"), never silently.
                assert event[kind]["seq"] == last + 1, "a gap ember did not tell"
                last = event[kind]["seq"]
        if "service" in event:
            show(event["service"])
        elif "service_removed" in event:
            print(f"{event['service_removed']['name']}: removed", flush=True)
            last = event["service_removed"]["seq"]
        elif "system" in event:
            print(f"system: {event['system']['state']}", flush=True)
    elif "lagged" in message:
        print(f"fell behind by {message['lagged']['missed']} changes; a snapshot follows",
              flush=True)
    elif "error" in message:
        sys.exit(f"ember refused: {message['error']['message']}")
