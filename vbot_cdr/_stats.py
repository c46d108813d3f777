"""`IterationStats`: the counters of one iteration, each written by the stage that owns it."""

from __future__ import annotations

import attrs

__all__ = ["IterationStats"]


@attrs.define
class IterationStats:
    """Counters of one iteration, updated as it runs; each stage writes its own.

    They are for the caller to read (progress, logs): no stage steers by them.

    Attributes:
        requests: HTTP requests sent (every attempt, the count included). The port.
        retries: Attempts that were retries of a failed one. The port.
        pages: Pages fetched successfully by the paging stage.
        extra_pages: Pages fetched beyond the count because the last one came back full.
            The paging stage.
        duplicates: Records dropped because their ``trans_id`` had already been handed out
            (in this read, or by the read a sync resumes), as pages, window edges or the
            boundary brought them again; not the repair's re-reads of a range, which are
            meant to meet records again. The exactly-once stage.
        vanished: Records counted at the start that a re-count no longer finds. The repair.
        yielded: Records handed to the consumer. The public iterators.
        max_shift: The largest offset shift observed between two fetches, in records. The
            exactly-once stage.
        windows: Time windows planned (0 when the iteration is not sliced by time).
        windows_done: Time windows whose records have all been handed to the consumer.
        replans: Times the paging stage started over with a smaller page size, because the
            server answered fewer records per page than asked.
        recounts: ``countAll`` requests sent to verify and repair (0 on a complete read).
        repair_pages: ``getAll`` requests sent to verify and repair.
        repaired: Records the repair found that the pages had missed.
        in_flight_limit: The most requests the iteration lets be in flight now: its
            ``concurrency``, halved by each 429, grown back by successes. The paging stage.
        in_flight_cuts: Times a 429 halved the in-flight limit. The paging stage.
        ledger_peak: The most records one range's exactly-once ledger held (12 bytes each),
            as of the last range finished. An unsliced read is planned to keep it under
            200,000 however long the read (in newest-first windows of time; read whole, and
            so above it, only when the server's date filter cannot be trusted); a read
            sliced by time, and so a sync, is not planned: its ledger holds a window's
            calls (see `_exactly_once`). The exactly-once stage.

    .. versionadded:: Unreleased ``replans``, ``recounts``, ``repair_pages``, ``repaired``,
       ``in_flight_limit``, ``in_flight_cuts``, ``ledger_peak``.
    """

    requests: int = 0
    retries: int = 0
    pages: int = 0
    extra_pages: int = 0
    duplicates: int = 0
    vanished: int = 0
    yielded: int = 0
    max_shift: int = 0
    windows: int = 0
    windows_done: int = 0
    replans: int = 0
    recounts: int = 0
    repair_pages: int = 0
    repaired: int = 0
    in_flight_limit: int = 0
    in_flight_cuts: int = 0
    ledger_peak: int = 0
