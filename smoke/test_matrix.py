"""The 12 automated checks of the smoke matrix, one test each, collected from the check catalogue.

Set A: ``pytest -m setA`` (rehearsal, dev branch or sandbox). Set B: ``pytest -m setB --db-url PROD``
(production window: read-only, database only). Select by id with ``--check A3,A7``, or ``-k A3_``
(the underscore keeps ``-k A1_`` from also selecting A10-A19). Each check's id, title, sets, markers
and per-table parametrization come from cutover/suite/catalogue.py; its query is in
cutover/suite/checks/, written from the plan independently of the cutover module.
"""

from __future__ import annotations

from cutover.suite.matrix import Matrix

checks = Matrix()  # collected as one test per automated check of the catalogue (cutover/suite/matrix.py)
