#!/usr/bin/env python3
"""Holds N Server-Sent Events clients on one URL for D seconds (stdlib only).

Each client is a plain HTTP/1.1 connection reading `text/event-stream`; it
records the `id` (the feed's frame sequence) of every event it gets. At the
end prints one JSON object: clients connected, events per client, and
whether every client saw every frame the feed sent after it had connected
(no missing sequence numbers; a `snapshot` after falling behind counts as
a resync, reported separately).

usage: sse_clients.py HOST PORT PATH CLIENTS SECONDS
"""
import asyncio
import json
import sys
import time


async def client(host, port, path, seconds, out):
    seqs, resyncs = [], 0
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 30)
        if b" 200 " not in status:
            out.append({"error": status.decode(errors="replace").strip()})
            return
        end = time.monotonic() + seconds
        # One message's fields, handled at the blank line that ends it (axum
        # writes `id:` before `event:`).
        event, seq = None, None
        while time.monotonic() < end:
            try:
                line = await asyncio.wait_for(reader.readline(), max(0.1, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not line:
                break
            line = line.strip()
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"id:"):
                try:
                    seq = int(line[3:].strip())
                except ValueError:
                    seq = None
            elif not line:
                if seq is not None:
                    if event == b"snapshot" and seqs:
                        resyncs += 1
                    seqs.append(seq)
                event, seq = None, None
        writer.close()
    except Exception as e:  # counted, not hidden
        out.append({"error": repr(e)})
        return
    out.append({"seqs": seqs, "resyncs": resyncs})


async def main():
    host, port, path, n, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    out = []
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(client(host, port, path, seconds, out)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    errors = [o["error"] for o in out if "error" in o]
    ok = [o for o in out if "seqs" in o]
    # Frames the feed sent while every client was connected: from the newest
    # first id to the oldest last id.
    firsts = [o["seqs"][0] for o in ok if o["seqs"]]
    lasts = [o["seqs"][-1] for o in ok if o["seqs"]]
    common = set(range(max(firsts), min(lasts) + 1)) if firsts and lasts and max(firsts) <= min(lasts) else set()
    missing = sum(1 for o in ok if not common.issubset(o["seqs"]))
    events = sorted(len(o["seqs"]) for o in ok)
    print(json.dumps({
        "clients": len(ok),
        "errors": len(errors),
        "first_errors": errors[:3],
        "common_frames": len(common),
        "clients_missing_a_common_frame": missing,
        "resyncs": sum(o["resyncs"] for o in ok),
        "events_per_client_min": events[0] if events else 0,
        "events_per_client_median": events[len(events) // 2] if events else 0,
    }))


asyncio.run(main())
