"""Smoke and rehearsal suite for the Phase 2a patient tenant cutover."""

__version__ = "0.1.0"
