"""Laptop tools: the dev server, the embedded PostgreSQL, the demo leads, the smoke test, the widget's pages."""
