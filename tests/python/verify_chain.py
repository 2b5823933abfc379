#!/usr/bin/env python3
"""Verify a Ledgerstack JSON Lines export the way an auditor would: with nothing but a JSON
parser and SHA-256, sharing no code with Ledgerstack.

Checks that every line is in canonical form (sorted keys, no nulls, no white space), that each
line's prev_hash is the SHA-256 of the line before it, that positions increase, that
recorded_at never goes backwards, and that each stream's versions run 1, 2, 3, ...

Usage: verify_chain.py FILE
Exit 0 and "ok: N events, head HASH" when the chain verifies; exit 1 and
"line N: what is wrong" at the first problem.
"""

import hashlib
import json
import sys


def canonical(value):
    """The canonical text of a JSON value, as Ledgerstack defines it (docs/events.md)."""
    if isinstance(value, dict):
        members = sorted((k, v) for k, v in value.items() if v is not None)
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def verify(path):
    prev = "0" * 64
    last_position = 0
    last_recorded = ""
    versions = {}
    count = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {number}: not JSON ({e})"
            if canonical(event) != line:
                return f"line {number}: not in canonical form"
            if event["prev_hash"] != prev:
                return f"line {number}: prev_hash does not match the previous line's hash"
            if event["position"] <= last_position:
                return f"line {number}: position {event['position']} after {last_position}"
            # RFC 3339 UTC with fixed width sorts as text.
            if event["recorded_at"] < last_recorded:
                return f"line {number}: recorded_at goes backwards"
            expected = versions.get(event["stream"], 0) + 1
            if event["version"] != expected:
                return f"line {number}: stream {event['stream']} version {event['version']}, expected {expected}"
            versions[event["stream"]] = expected
            last_position = event["position"]
            last_recorded = event["recorded_at"]
            prev = hashlib.sha256(line.encode("utf-8")).hexdigest()
            count += 1
    return (count, prev)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    result = verify(sys.argv[1])
    if isinstance(result, str):
        print(result)
        return 1
    count, head = result
    print(f"ok: {count} events, head {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
