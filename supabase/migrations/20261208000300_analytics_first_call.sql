-- Analytics right after a morning sweep (issue 24): each call computes live what happened since the
-- open day's last fold, the sweep's events included, and looked up the owner of each event's lead
-- through the leads' primary key and a page of the directory each; and the check for reopened alerts
-- read every event of the tenant since its last look to find the few reopened ones. The owner is now
-- read from an index alone, and the reopened events from an index of their own.

-- A lead's owner read from the index alone: the analytics look up the owner of each event's lead
-- (a day's events and those since the open day's last fold), without a page of the directory each.
create index idx_leads_tenant_lead_owner on public.leads (tenant_id, lead_id) include (owner_id);

-- A tenant's reopened alerts since a moment (the summaries check them on each call) without reading
-- the other events of that time, such as a morning sweep's.
create index idx_alert_events_reopened on public.alert_events (tenant_id, at) where event = 'reopened';
