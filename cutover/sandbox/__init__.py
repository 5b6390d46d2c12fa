"""The throwaway PostgreSQL a rehearsal runs on: backends, the shared server with its clones, snapshots.

Kept apart from the suite so that `cutover snapshot` and the benchmarks use it without pytest.
"""
