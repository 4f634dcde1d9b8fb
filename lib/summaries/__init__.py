"""Summaries kept up to date on write (issue 22): the pages read a few summary rows instead of
aggregating the whole history.

- :mod:`lib.summaries.spec`: what each summary counts, once, as SQL over a row;
- :mod:`lib.summaries.maintenance`: its triggers, rebuild, check against a recount, compaction;
- :mod:`lib.summaries.store`: reading a summary (counts plus pending deltas) and adding to it;
- :mod:`lib.summaries.requirements`: the per-label requirement counts, kept by the index;
- :mod:`lib.summaries.ranges`: exact totals over a time range (whole days from the summary,
  the partial days at its ends from the source table's index, or, for a kind kept per hour
  too, whole hours and at most half an hour of rows at each end);
- ``python -m lib.summaries rebuild|check``: the operator's commands.

Nothing is imported here: :mod:`lib.requirement_index` (imported by :mod:`lib.models`) uses the
store, which must not pull the models in before they exist.
"""
