"""Delivery: every reading of an agent into the archive exactly once, then statistics.

One module per fault model (docs/faults.md):

- `files`: the only writer of bytes; writes, fsyncs and renames the crash-state
  explorer traces;
- `archive`: failed or torn writes (identity on every row, torn tails, rollback);
- `lineage`: epochs that come back, pages served again, a lost lineage file;
- `pipeline`: crashes, failures and cancellation between pull, archive and ack;
  pages from the wrong agent; one delivery per agent at a time;
- `statistics`: hours of an outage backlog, imported once complete, durably;
- `recorder_import`: the thin Home Assistant glue for the statistics import (the
  only module here that imports Home Assistant).
"""
