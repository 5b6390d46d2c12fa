"""The reference cutover: what operators run in production (dry-run, execute, sweep, reverse, report).

No pytest and no suite settings here: production must not depend on the test harness that checks it.
"""
