"""Leadership figures and reports: aggregates, small-cell suppression, charts, the archive."""
