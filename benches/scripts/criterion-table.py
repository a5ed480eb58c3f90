#!/usr/bin/env python3
"""Turns criterion's saved estimates into the README's Markdown tables.

Usage: benches/scripts/criterion-table.py [CRITERION_DIR]
(default: $CARGO_TARGET_DIR/criterion, else ~/.cache/ei-target/criterion).
Prints every benchmark's median time and throughput, then each of ours as a ratio
to its limit measured in the same run (the pairs below)."""
import json
import os
import sys
from pathlib import Path

# (ours, limit, what the ratio says)
PAIRS = [
    ("parse_update_1000/bytes/ours_parse_request", "parse_update_1000/bytes/raw_quick_xml_events",
     "parse 1000-post Update vs quick-xml events (goal >= 0.70)"),
    ("parse_update_1000/bytes/ours_parse_request", "parse_update_1000/bytes/raw_quick_xml_ns_text",
     "parse vs NsReader + text decoding"),
    ("find/ours_1", "find/raw_1", "FindContent 1 row vs raw prefix scan"),
    ("find/ours_10", "find/raw_10", "FindContent 10 rows vs raw prefix scan"),
    ("find/ours_50", "find/raw_50", "FindContent 50 rows vs raw prefix scan"),
    ("update_1000_sync/ours_changed", "update_1000_sync/raw_multiget_put_changed",
     "Update changed mostRecentContent, synced, vs raw multi-get + synced WriteBatch"),
    ("update_1000_nosync/ours_changed", "update_1000_nosync/raw_multiget_put_changed",
     "Update changed, WAL not synced, vs raw multi-get + WriteBatch"),
    ("update_1000_sync/ours_same", "update_1000_sync/raw_multiget_put_changed",
     "identical re-send, synced, vs raw multi-get + synced WriteBatch"),
    ("new_keys_1000_sync/ours", "new_keys_1000_sync/raw_put_batch",
     "Update new keys, synced, vs raw synced WriteBatch"),
    ("new_keys_1000_sync/ours", "new_keys_1000_sync/raw_multiget_put",
     "Update new keys, synced, vs raw multi-get + synced WriteBatch"),
    ("new_keys_1000_nosync/ours", "new_keys_1000_nosync/raw_put_batch",
     "Update new keys, WAL not synced, vs raw WriteBatch"),
    ("new_keys_1000_nosync/ours", "new_keys_1000_nosync/raw_multiget_put",
     "Update new keys, WAL not synced, vs raw multi-get + WriteBatch"),
]


def load(root):
    out = {}
    for bj in root.glob("**/new/benchmark.json"):
        b = json.loads(bj.read_text())
        est = json.loads((bj.parent / "estimates.json").read_text())
        ns = est["median"]["point_estimate"]
        tp = b.get("throughput") or {}
        out[b["full_id"]] = (ns, tp)
    return out


def rate(ns, tp):
    if "Bytes" in tp:
        return tp["Bytes"] / (ns / 1e9) / 1e6, "MB/s"
    if "Elements" in tp:
        return tp["Elements"] / (ns / 1e9), "elem/s"
    return 1e9 / ns, "iter/s"


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main():
    default = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/ei-target")) / "criterion"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    res = load(root)
    print("| benchmark | median time | rate |")
    print("|---|---:|---:|")
    for k in sorted(res):
        ns, tp = res[k]
        r, unit = rate(ns, tp)
        print(f"| {k} | {fmt_time(ns)} | {r:,.0f} {unit} |")
    print()
    print("| ours / limit | ours | limit | ratio |")
    print("|---|---:|---:|---:|")
    for ours, lim, what in PAIRS:
        if ours in res and lim in res:
            ro, unit = rate(*res[ours])
            rl, _ = rate(*res[lim])
            print(f"| {what} | {ro:,.0f} {unit} | {rl:,.0f} {unit} | {ro / rl:.2f} |")


if __name__ == "__main__":
    main()
