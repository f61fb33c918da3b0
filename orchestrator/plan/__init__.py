"""Plan: what a run would do and what it costs, decided once against the store (read only).

``plan`` sorts resolved shots into new, changed, unchanged, failed and removed; ``pricing`` prices them by model;
``diff`` compares two specs, snapshots or git revisions.
"""
