"""The phases of a stage's run, from its --json line on stdin, for NOTES.md
("5,000 URLs beside tokio"). Prints when the requests reached each moment of
the stage's timeline (seconds from the stage's start: min/p10/p50/p90/max),
in the format of `tokio_client --phases`, so the two clients' phases can be
set side by side:

    target/release/examples/generator --urls 5000 --url URL --json | python3 scripts/phases.py
    target/release/tokio_client --urls 5000 --url URL --json --phases >/dev/null
"""
import json
import sys

line = next(l for l in reversed(sys.stdin.read().splitlines()) if l.startswith('{"stage"'))
run = json.loads(line)
print('{}: {} requests, {} errors, {:.3f} s'.format(run['stage'], run['requests'], run['errors'], run['seconds']))
timeline = run['timeline']
for name in ['started', 'connected', 'first_byte', 'finished']:
    v = sorted(t[name] for t in timeline if t.get(name) is not None)
    if not v:
        continue
    at = lambda q: v[(len(v) - 1) * q // 100]
    print('{:<10} min {:.3f} p10 {:.3f} p50 {:.3f} p90 {:.3f} max {:.3f}'.format(
        name, at(0), at(10), at(50), at(90), at(100)))
