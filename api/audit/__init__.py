"""The quality audit: compliance routes, the dashboard page, charts, pseudonyms, and mounting it."""
