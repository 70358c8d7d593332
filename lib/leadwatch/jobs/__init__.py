"""Scheduled work: the notifications' deliverer, the nightly retention, and pg_cron's schedule of both."""
