-- "Nothing due" stays cheap right after a big sweep. A sweep moves every due lead's due times on,
-- and each of those updates leaves behind an entry in idx_lead_state_next_due for the old row
-- version, with the old (past) due time: exactly the range the next sweep reads. Until something
-- visits them they cost that next sweep a heap visit each (62 ms at 200,000 leads right after a
-- sweep that moved 40,000 due times, 1.1 ms after a VACUUM; issue 14), and autovacuum may not come
-- for hours (the updates stay under its default trigger). Once the sweep has committed, its caller
-- reads that range once through the index: an index scan marks every entry whose row is dead to
-- all transactions as dead in the index itself, and later scans skip them without a heap visit.

-- Tables ------------------------------------------------------------------------------------------

-- Real life: let autovacuum clear lead_state after a big sweep rather than at 20 % of the table.
alter table public.lead_state set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);

-- Functions ---------------------------------------------------------------------------------------

/**
 * Read the due-time index up to `p_now` row by row, so that the entries the last sweep left
 * behind are marked dead in the index (the scan must visit the heap: not a bitmap or index-only
 * scan). Run after the sweep's transaction has committed, never inside it. Answers how many leads
 * are still due.
 */
create function public.prune_due_index(p_now timestamptz default now()) returns bigint
language sql
set search_path = ''
set enable_seqscan = off
set enable_bitmapscan = off
set enable_indexonlyscan = off
as $$
  select count(*) from public.lead_state s where s.next_due_at <= p_now
$$;
revoke all on function public.prune_due_index(timestamptz) from public, anon, authenticated, service_role;
grant execute on function public.prune_due_index(timestamptz) to service_role;
