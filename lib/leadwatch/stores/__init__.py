"""The stores: one interface (`Store`) over Postgres directly or Supabase's REST API, and the cursors
they page with."""
