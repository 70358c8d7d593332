-- Less work per activity logged (issue 24: ingest and lists of 1,000 against their floors on a
-- mature deployment). The ingest-time rules' reads of a lead's newest activities are plain reads by
-- key judged on their arrays (no window, grouping or sort set up per call: `heard_channel`); the
-- rules' settings and clocks are read in one pass (`rules_at_ingest`); a call reads its lead's
-- active alerts in the statement that moves its state.

-- rules_at_ingest now answers the clocks too (rule_clocks' columns): a new row type.
drop function public.rules_at_ingest(text);

/**
 * What `log_activity` needs from the rules in force for a tenant, in one row: the thresholds of
 * the time-based rules (null where disabled), the settings of the ingest-time rules (their
 * `min_count` null where disabled), and the time-based rules' clocks (true: the business clock)
 * with, when one of them counts working time, the tenant's calendar (else null, and not read): what
 * `rule_thresholds` and `rule_clocks` answer, read in one pass over the rules. A table function so
 * that Postgres inlines it.
 */
create function public.rules_at_ingest(p_tenant text)
returns table (no_contact interval, no_reply interval, stale interval, high_value interval,
               hot_window interval, hot_count smallint, preferred_window interval, preferred_count smallint,
               business_no_contact boolean, business_no_reply boolean, business_stale boolean,
               business_high_value boolean, calendar public.business_calendars)
language sql stable
as $$
  select r.no_contact, r.no_reply, r.stale, r.high_value, r.hot_window, r.hot_count, r.preferred_window,
         r.preferred_count, r.business_no_contact, r.business_no_reply, r.business_stale, r.business_high_value,
         case when r.business_no_contact or r.business_no_reply or r.business_stale or r.business_high_value
              then public.calendar_for(p_tenant) end
  from (select max(r.threshold) filter (where r.type = 'NoContact7d' and r.enabled) as no_contact,
               max(r.threshold) filter (where r.type = 'NoReply3d' and r.enabled) as no_reply,
               max(r.threshold) filter (where r.type = 'StaleLead30d' and r.enabled) as stale,
               max(r.threshold) filter (where r.type = 'HighValueRisk' and r.enabled) as high_value,
               max(r.threshold) filter (where r.type = 'HotLead24h' and r.enabled) as hot_window,
               max(r.min_count) filter (where r.type = 'HotLead24h' and r.enabled) as hot_count,
               max(r.threshold) filter (where r.type = 'PreferredChannel' and r.enabled) as preferred_window,
               max(r.min_count) filter (where r.type = 'PreferredChannel' and r.enabled) as preferred_count,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'NoContact7d'), false) as business_no_contact,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'NoReply3d'), false) as business_no_reply,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'StaleLead30d'), false) as business_stale,
               coalesce(bool_or(r.clock = 'business') filter (where r.type = 'HighValueRisk'), false)
                 as business_high_value
        from public.rules_for(p_tenant) r) r
$$;
grant execute on function public.rules_at_ingest(text) to authenticated, service_role;

/**
 * PreferredChannel's reading of a lead's newest inbound (their channels and times, newest first):
 * the channel at least `p_min_count` of the first 5 came on, counting those after `p_since` (the
 * rule's window; null: no window); the most frequent, and between equals the one heard from last.
 * Null when none is. A few array lookups: judged once per activity logged.
 */
create or replace function public.heard_channel(p_channels text[], p_times timestamptz[], p_since timestamptz,
                                                p_min_count integer) returns text
language plpgsql immutable
as $$
declare
  v_heard integer := 0;   -- how many of them count: those after p_since (newest first, so the first ones)
  v_count integer;
  v_most  integer := 0;
  v_best  text;
begin
  while v_heard < least(5, cardinality(p_channels)) and (p_since is null or p_times[v_heard + 1] > p_since) loop
    v_heard := v_heard + 1;
  end loop;
  for k in 1 .. v_heard loop  -- newest first: a channel heard from later wins only by more
    v_count := cardinality(array_positions(p_channels[1:v_heard], p_channels[k]));
    if v_count >= p_min_count and v_count > v_most then
      v_best := p_channels[k];
      v_most := v_count;
    end if;
  end loop;
  return v_best;
end
$$;
grant execute on function public.heard_channel(text[], timestamptz[], timestamptz, integer) to authenticated, service_role;

/**
 * Log one activity of a lead and apply the rules it triggers.
 *
 * Idempotent on (tenant, channel, external id): a replay returns the stored activity with
 * `duplicate: true` and changes nothing. Judged by `occurred_at`: an event older than what we
 * already know never moves "last activity" back, and an inbound that occurred before our last
 * outbound does not answer it. A send that failed is stored but is not contact. Users log only
 * in their tenant, and agents only for the leads they own.
 *
 * The ingest-time rules are judged here, reading only the lead's most recent activities:
 * - HotLead24h: the lead's last `min_count` inbound all occurred within the rule's window (24 h)
 *   before now, after our last outbound. Answered by an outbound that occurred after the first of them.
 *   Read only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
 *   older than its newest stored inbound (ingest moves it forward, `refresh_lead_state` sets it to
 *   the newest), so when it is not after the cutoff this inbound is the only one there.
 * - PreferredChannel: `min_count` of the lead's last 5 inbound came on one channel (else: the
 *   directory's `preferred_channel`, which the lead's state carries), and neither of our last 2
 *   outbound used it. Answered by an
 *   outbound on that channel that occurred after the first of those two.
 */
create or replace function public.log_activity(
  p_tenant          text,
  p_lead_id         text,
  p_channel         text,
  p_direction       text,
  p_status          text default 'sent',
  p_message_snippet text default null,
  p_meta            jsonb default null,
  p_occurred_at     timestamptz default null,
  p_external_id     text default null
) returns jsonb
language plpgsql
security definer  -- moves lead_state and alerts, which users cannot write themselves
set search_path = ''
-- Every statement here reads one lead by key: one plan each, made once per connection, never
-- replanned per call (the rules' statement would otherwise cost more to plan than to run).
set plan_cache_mode = force_generic_plan
as $$
declare
  v_at       timestamptz := coalesce(p_occurred_at, now());
  v_activity public.lead_activities;
  v_old      public.lead_state;
  v_new      public.lead_state;
  v_rules    record;
  v_types    text[] := '{}'::text[];
  v_open     text[];            -- the lead's active alert types
  v_created  text[] := '{}'::text[];
  v_resolved jsonb := '[]'::jsonb;
  v_cutoff    timestamptz;      -- HotLead24h counts the inbound after this (the window, our last outbound)
  v_hot       boolean;          -- may this activity raise HotLead24h?
  v_preferred boolean;          -- ... PreferredChannel?
  v_heard     text[];           -- the channels and times of the lead's newest inbound, newest first
  v_times     timestamptz[];
  v_channel   text;             -- the lead's channel: most of their last 5 inbound, else the directory's
  v_ours      text[];           -- the channels of our last 2 outbound, since when
  v_streak    timestamptz;
begin
  if not public.is_trusted_caller() then  -- a user: in their tenant, and (agents) for their own leads
    perform public.assert_acts_in(p_tenant);
    if not public.can_see_lead(p_tenant, p_lead_id) then
      perform public.raise_error('LW404', 'lead not found', 'leadId');
    end if;
  end if;
  if v_at > now() + interval '5 minutes' then
    perform public.raise_error('LW422', 'occurredAt is more than 5 minutes in the future', 'occurredAt');
  end if;

  insert into public.lead_activities
    (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
  values
    (p_tenant, p_lead_id, p_channel, p_direction, coalesce(p_status, 'sent'), left(p_message_snippet, 100),
     p_meta, v_at, p_external_id)
  on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
  returning * into v_activity;

  if v_activity.id is null then  -- a replay: answer with what was stored the first time
    select * into v_activity from public.lead_activities a
    where a.tenant_id = p_tenant and a.channel = p_channel and a.external_id = p_external_id;
    return jsonb_build_object('activity', public.activity_json(v_activity),
                              'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                              'duplicate', true);
  end if;

  if public.counts_as_contact(v_activity.status) then
    -- The rules' settings and clocks (with the calendar when a rule counts working time), one row.
    select * into v_rules from public.rules_at_ingest(p_tenant);

    -- One writer per lead at a time: the state row is the lock.
    select * into v_old from public.lead_state s
    where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
    if not found then
      insert into public.lead_state (tenant_id, lead_id, entered_at) values (p_tenant, p_lead_id, v_at)
      on conflict do nothing;
      select * into v_old from public.lead_state s
      where s.tenant_id = p_tenant and s.lead_id = p_lead_id for update;
    end if;

    v_new := v_old;
    v_new.last_activity_at := greatest(v_old.last_activity_at, v_at);
    if p_direction = 'in' then
      v_new.last_inbound_at := greatest(v_old.last_inbound_at, v_at);
    else
      v_new.last_outbound_at := greatest(v_old.last_outbound_at, v_at);
    end if;

    -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
    if v_new.last_activity_at is distinct from v_old.last_activity_at then
      v_types := v_types || array['NoContact7d', 'StaleLead30d', 'HighValueRisk'];
      v_new.no_contact_due_at := public.clock_add(v_rules.calendar, v_rules.business_no_contact,
                                                  v_new.last_activity_at, v_rules.no_contact);
      v_new.stale_due_at := public.clock_add(v_rules.calendar, v_rules.business_stale,
                                             v_new.last_activity_at, v_rules.stale);
      v_new.high_value_due_at := case when v_new.high_value
                                      then public.clock_add(v_rules.calendar, v_rules.business_high_value,
                                                            v_new.last_activity_at, v_rules.high_value) end;
    end if;

    -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
    if v_at > coalesce(v_old.last_outbound_at, '-infinity') then
      v_types := v_types || array['NoReply3d'];
      v_new.no_reply_due_at := case
        when v_new.last_outbound_at > coalesce(v_new.last_inbound_at, '-infinity')
        then public.clock_add(v_rules.calendar, v_rules.business_no_reply, v_new.last_outbound_at, v_rules.no_reply)
      end;
    end if;

    update public.lead_state s set
      last_activity_at  = v_new.last_activity_at,
      last_inbound_at   = v_new.last_inbound_at,
      last_outbound_at  = v_new.last_outbound_at,
      no_contact_due_at = v_new.no_contact_due_at,
      no_reply_due_at   = v_new.no_reply_due_at,
      stale_due_at      = v_new.stale_due_at,
      high_value_due_at = v_new.high_value_due_at
    where s.tenant_id = p_tenant and s.lead_id = p_lead_id
    -- The lead's active alert types, read with the lead locked (this statement's snapshot is taken
    -- after the lock above was granted): what a writer before us committed is seen.
    returning (select coalesce(array_agg(a.type), '{}') from public.max_alerts a
               where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null)
    into v_open;

    -- Most activities find nothing to answer: look before writing (and firing the history trigger).
    -- An outbound answers HotLead24h, and PreferredChannel when it uses the lead's channel.
    if cardinality(v_open) > 0 and (cardinality(v_types) > 0 or p_direction = 'out') then
      with resolved as (
        update public.max_alerts a
        set resolved_at = now(), resolved_by = 'system', resolution = 'activity', resolved_by_activity = v_activity.id
        where a.tenant_id = p_tenant and a.lead_id = p_lead_id and a.resolved_at is null
          and (a.type = any (v_types)
               or (p_direction = 'out' and v_at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = p_channel))))
        returning a.type
      )
      select coalesce(jsonb_agg(r.type order by r.type), '[]') into v_resolved from resolved r;
      v_open := array(select unnest(v_open) except select jsonb_array_elements_text(v_resolved));
    end if;

    -- What the ingest-time rules need, read in one statement from the lead's newest activities (the
    -- index's order): the newest inbound (HotLead24h's burst, PreferredChannel's last 5) and our
    -- last 2 outbound. Only when a rule can fire: enabled, not already active, and (HotLead24h) an
    -- inbound within the window after our last outbound, (PreferredChannel) once we have written.
    -- Plain reads by key, judged here on their arrays: no window, grouping or sort to set up per call.
    v_cutoff := greatest(now() - v_rules.hot_window, coalesce(v_new.last_outbound_at, '-infinity'));
    v_hot := p_direction = 'in' and v_rules.hot_count is not null and not 'HotLead24h' = any (v_open)
             and v_at > v_cutoff and (v_rules.hot_count <= 1 or v_old.last_inbound_at > v_cutoff);
    v_preferred := v_rules.preferred_count is not null and not 'PreferredChannel' = any (v_open)
                   and v_new.last_outbound_at is not null;
    if v_hot or v_preferred then
      select i.channels, i.times, o.channels, o.since
      into v_heard, v_times, v_ours, v_streak
      from (select array_agg(x.channel::text order by x.occurred_at desc, x.id desc) as channels,
                   array_agg(x.occurred_at order by x.occurred_at desc, x.id desc) as times
            from (select a.channel, a.occurred_at, a.id
                  from public.lead_activities a
                  where a.tenant_id = p_tenant and a.lead_id = p_lead_id
                    and a.direction = 'in' and public.counts_as_contact(a.status)
                  order by a.occurred_at desc, a.id desc
                  limit greatest(5, v_rules.hot_count)) x) i
      cross join (select array_agg(x.channel::text) as channels, min(x.occurred_at) as since
                  from (select a.channel, a.occurred_at
                        from public.lead_activities a
                        where v_preferred and a.tenant_id = p_tenant and a.lead_id = p_lead_id
                          and a.direction = 'out' and public.counts_as_contact(a.status)
                        order by a.occurred_at desc, a.id desc
                        limit 2) x) o;

      -- The burst: the last `min_count` inbound all occurred after the cutoff (newest first, so the
      -- oldest of them decides), since the oldest of them.
      if v_hot and v_times[v_rules.hot_count] > v_cutoff then
        perform public.raise_ingest_alert(p_tenant, p_lead_id, 'HotLead24h', v_times[v_rules.hot_count],
                                          v_rules.hot_count);
        v_created := v_created || 'HotLead24h'::text;
      end if;
      if v_preferred and cardinality(v_ours) = 2 then
        v_channel := coalesce(public.heard_channel(v_heard, v_times, now() - v_rules.preferred_window,
                                                   v_rules.preferred_count),
                              v_old.preferred_channel);
        if v_channel is not null and not v_channel = any (v_ours) then
          perform public.raise_ingest_alert(p_tenant, p_lead_id, 'PreferredChannel', v_streak, p_channel => v_channel);
          v_created := v_created || 'PreferredChannel'::text;
        end if;
      end if;
    end if;
  end if;

  return jsonb_build_object('activity', public.activity_json(v_activity),
                            'alerts', jsonb_build_object('created', to_jsonb(v_created), 'resolved', v_resolved),
                            'duplicate', false);
end
$$;
grant execute on function public.log_activity(text, text, text, text, text, text, jsonb, timestamptz, text) to authenticated, service_role;

/**
 * Log activities of distinct leads (no two with the same lead, no two with the same channel and
 * external id) and apply the rules they trigger, exactly as `log_activity` describes; answer one
 * result per activity, keyed by its `ord`: the rules of `log_activity`, set-based. The core of
 * `log_activities`, which checks the caller and the input first; nobody calls it directly.
 *
 * 1. Store the activities (a replay of a stored external id is not stored again), lock the state
 *    rows of the leads they concern and read them (one writer per lead at a time); create those
 *    missing, then lock and read them too.
 * 2. Move each lead's state forward and judge, from the state read, the lead's active alerts and
 *    its newest activities (read only when an ingest-time rule can fire), what the activity
 *    answers and raises. One statement: a fresh snapshot taken once the leads are locked.
 * 3. Resolve (by the alerts' primary keys), then raise, only when there is something to resolve
 *    or raise (an alert write fires the history triggers even when it writes nothing).
 */
create or replace function public.ingest_activities(p_tenant text, p_items public.activity_in[])
returns jsonb
language plpgsql
set search_path = ''
-- Each statement reads a few leads by key: one plan, made once per connection, never replanned per call.
set plan_cache_mode = force_generic_plan
as $$
declare
  v_rows     public.lead_activities[];
  v_contacts bigint;                  -- how many of them count as contact
  v_state    public.lead_state[];     -- the state of their leads before them, locked
  v_verdicts public.ingest_verdict[];
  v_answered uuid[];                  -- the active alerts the activities answer, to resolve
  v_resolver jsonb;                   -- the activity answering them, by lead
  v_resolved jsonb;
  v_created  jsonb;
  v_results  jsonb;
begin
  with stored as (
    insert into public.lead_activities as a
      (tenant_id, lead_id, channel, direction, status, message_snippet, meta, occurred_at, external_id)
    select p_tenant, i.lead_id, i.channel, i.direction, coalesce(i.status, 'sent'), left(i.message_snippet, 100),
           i.meta, coalesce(i.occurred_at, now()), i.external_id
    from unnest(p_items) i
    order by i.ord
    on conflict (tenant_id, channel, external_id) where external_id is not null do nothing
    returning a.tenant_id, a.lead_id, a.status, a.occurred_at, a as activity
  ),
  -- The leads' state, locked in key order: its latest version (the lock waits for another writer).
  locked as (
    select s from public.lead_state s
    where s.tenant_id = p_tenant
      and s.lead_id in (select a.lead_id from stored a where public.counts_as_contact(a.status))
    order by s.lead_id
    for update
  ),
  entered as (  -- a lead first heard of now: its silence starts with this activity
    insert into public.lead_state (tenant_id, lead_id, entered_at)
    select a.tenant_id, a.lead_id, a.occurred_at from stored a
    where public.counts_as_contact(a.status) and a.lead_id not in (select (l.s).lead_id from locked l)
    on conflict do nothing
  )
  select array_agg(s.activity), count(*) filter (where public.counts_as_contact(s.status)),
         (select array_agg(l.s) from locked l)
  into v_rows, v_contacts, v_state
  from stored s;

  if coalesce(cardinality(v_state), 0) < v_contacts then
    -- Leads first heard of now (their rows, created above, were invisible to the lock): lock and
    -- read them all again.
    select array_agg(l.s) into v_state
    from (select s from public.lead_state s
          where s.tenant_id = p_tenant
            and s.lead_id in (select a.lead_id from unnest(v_rows) a where public.counts_as_contact(a.status))
          order by s.lead_id
          for update) l;
  end if;

  with rules as materialized (
    select r.no_contact as t_no_contact, r.no_reply as t_no_reply, r.stale as t_stale,
           r.high_value as t_high_value, r.hot_window, r.hot_count, r.preferred_window, r.preferred_count,
           r.business_no_contact as b_no_contact, r.business_no_reply as b_no_reply, r.business_stale as b_stale,
           r.business_high_value as b_high_value,
           r.calendar as cal
    from public.rules_at_ingest(p_tenant) r
  ),
  moved as (  -- the lead's state before (s) and after (last_*) the activity
    select s.*, a.id as activity_id, a.direction as dir, a.channel as chan, a.occurred_at as at,
           greatest(s.last_activity_at, a.occurred_at) as last_at,
           case when a.direction = 'in' then greatest(s.last_inbound_at, a.occurred_at)
                else s.last_inbound_at end as last_in,
           case when a.direction = 'out' then greatest(s.last_outbound_at, a.occurred_at)
                else s.last_outbound_at end as last_out,
           r.*
    from unnest(v_state) s
    join unnest(v_rows) a on a.lead_id = s.lead_id
    cross join rules r
  ),
  judged as (
    select m.*,
           -- Any later activity breaks the silence: NoContact7d, StaleLead30d and HighValueRisk start over.
           m.last_at is distinct from m.last_activity_at as silence_broken,
           -- Anything after our last outbound answers NoReply3d: a reply ends it, a new message restarts it.
           m.at > coalesce(m.last_outbound_at, '-infinity') as after_ours,
           -- HotLead24h counts the inbound after this: the window, our last outbound.
           greatest(now() - m.hot_window, coalesce(m.last_out, '-infinity')) as cutoff
    from moved m
  ),
  answered as (
    select j.*,
           case when j.silence_broken then array['NoContact7d', 'StaleLead30d', 'HighValueRisk'] else '{}' end
           || case when j.after_ours then array['NoReply3d'] else '{}' end as answers
    from judged j
  ),
  moved_state as (
    update public.lead_state s set
      last_activity_at  = j.last_at,
      last_inbound_at   = j.last_in,
      last_outbound_at  = j.last_out,
      no_contact_due_at = case when j.silence_broken then public.clock_add(j.cal, j.b_no_contact, j.last_at, j.t_no_contact) else s.no_contact_due_at end,
      stale_due_at      = case when j.silence_broken then public.clock_add(j.cal, j.b_stale, j.last_at, j.t_stale) else s.stale_due_at end,
      high_value_due_at = case when j.silence_broken then case when s.high_value then public.clock_add(j.cal, j.b_high_value, j.last_at, j.t_high_value) end
                               else s.high_value_due_at end,
      no_reply_due_at   = case when j.after_ours
                               then case when j.last_out > coalesce(j.last_in, '-infinity') then public.clock_add(j.cal, j.b_no_reply, j.last_out, j.t_no_reply) end
                               else s.no_reply_due_at end
    from answered j
    where s.tenant_id = p_tenant and s.lead_id = j.lead_id
  ),
  -- Only when a rule can fire: enabled, not already active, and (HotLead24h) an inbound within the
  -- window after our last outbound, (PreferredChannel) once we have written. HotLead24h reads the
  -- burst only when an earlier inbound may be in the window: the lead's `last_inbound_at` is never
  -- older than its newest stored inbound, so when it is not after the cutoff this inbound is alone.
  ruled as (
    select j.*, o.answered_ids,
           j.dir = 'in' and j.hot_count is not null and not 'HotLead24h' = any (coalesce(o.still_open, '{}'))
             and j.at > j.cutoff and (j.hot_count <= 1 or j.last_inbound_at > j.cutoff) as hot,
           j.preferred_count is not null and not 'PreferredChannel' = any (coalesce(o.still_open, '{}'))
             and j.last_out is not null as preferred
    from answered j
    -- The lead's active alerts: those the activity answers (an outbound also answers HotLead24h, and
    -- PreferredChannel when it uses the lead's channel), and those still active after it.
    cross join lateral (
      select array_agg(x.type) filter (where not x.answered) as still_open,
             array_agg(a.id) filter (where x.answered) as answered_ids
      from public.max_alerts a
      cross join lateral (
        select a.type::text as type,
               a.type::text = any (j.answers)
               or (j.dir = 'out' and j.at > a.cycle_started_at
                   and (a.type = 'HotLead24h' or (a.type = 'PreferredChannel' and a.channel = j.chan))) as answered
      ) x
      where a.tenant_id = p_tenant and a.lead_id = j.lead_id and a.resolved_at is null
    ) o
  )
  select array_agg(row(r.lead_id, r.hot_count, i.times[r.hot_count],
                       -- The burst: the last `min_count` inbound all occurred after the cutoff (newest
                       -- first, so the oldest of them decides), since the oldest of them.
                       coalesce(r.hot and i.times[r.hot_count] > r.cutoff, false),
                       p.channel, o.since,
                       r.preferred and p.channel is not null and cardinality(o.channels) = 2
                         and not p.channel = any (o.channels))::public.ingest_verdict),
         (select array_agg(x.id) from ruled x2 cross join unnest(x2.answered_ids) x(id)),
         jsonb_object_agg(r.lead_id, r.activity_id) filter (where r.answered_ids is not null)
  into v_verdicts, v_answered, v_resolver
  from ruled r
  -- Each read below runs only for the leads whose rule can fire (its condition is in its WHERE, so
  -- that the others skip it: in a join's ON it would be tested after the read).
  -- Our last 2 outbound, read in the index's order: PreferredChannel needs both.
  left join lateral (
    select array_agg(x.channel::text) as channels, min(x.occurred_at) as since
    from (select a.channel, a.occurred_at
          from public.lead_activities a
          where r.preferred and a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'out' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit 2) x
  ) o on true
  -- The lead's newest inbound (HotLead24h's burst, PreferredChannel's last 5), newest first; this
  -- activity is among them (it is stored).
  left join lateral (
    select array_agg(x.channel::text order by x.occurred_at desc, x.id desc) as channels,
           array_agg(x.occurred_at order by x.occurred_at desc, x.id desc) as times
    from (select a.channel, a.occurred_at, a.id
          from public.lead_activities a
          where (r.hot or (r.preferred and cardinality(o.channels) = 2))
            and a.tenant_id = p_tenant and a.lead_id = r.lead_id
            and a.direction = 'in' and public.counts_as_contact(a.status)
          order by a.occurred_at desc, a.id desc
          limit greatest(5, r.hot_count)) x
  ) i on true
  -- The lead's channel: the one at least `min_count` of the last 5 inbound came on (within the
  -- rule's window, if any), else the directory's (which the lead's state carries).
  cross join lateral (
    select case when r.preferred and cardinality(o.channels) = 2
                then coalesce(public.heard_channel(i.channels, i.times, now() - r.preferred_window,
                                                   r.preferred_count),
                              r.preferred_channel::text) end as channel
  ) p;

  if v_answered is not null then
    -- The alerts judging found answered, by their keys (no join whose method the statistics would
    -- choose); a concurrent resolution is seen and left alone. "Still active" is written so that no
    -- partial index of the active alerts can serve the statement (they all imply `resolved_at is
    -- null`, which this form does not prove): only the primary key, whatever the statistics. Under
    -- those of a mature table analysed with no alert active, the tenant's active alerts looked
    -- empty and the plan read them all, keeping the list's.
    with resolved as (
      update public.max_alerts a
      set resolved_at = now(), resolved_by = 'system', resolution = 'activity',
          resolved_by_activity = (v_resolver ->> a.lead_id)::uuid
      where a.tenant_id = p_tenant and a.id = any (v_answered) and (a.resolved_at is null) is true
      returning a.lead_id, a.type
    )
    select jsonb_object_agg(r.lead_id, r.types) into v_resolved
    from (select r.lead_id, jsonb_agg(r.type order by r.type) as types from resolved r group by r.lead_id) r;
  end if;

  if exists (select from unnest(v_verdicts) v where v.raise_hot or v.raise_pref) then
    -- The rule's message and action in the tenant's language: `{count}`, `{hours}` and `{channel}` filled in.
    with raised as (
      insert into public.max_alerts
        (tenant_id, lead_id, type, severity, message, suggested_action, cycle_started_at, channel)
      select p_tenant, v.lead_id, r.type, r.severity,
             replace(replace(replace(coalesce(r.messages ->> r.locale, r.messages ->> 'fr'),
                                     '{count}', coalesce(e.n::text, '')),
                             '{hours}', coalesce((extract(epoch from r.threshold) / 3600)::integer::text, '')),
                     '{channel}', coalesce(e.channel, '')),
             jsonb_build_object(
               'label', coalesce(r.action -> 'label' ->> r.locale, r.action -> 'label' ->> 'fr'),
               'action', r.action ->> 'action',
               'params', coalesce(r.action -> 'params', '{}'::jsonb) || jsonb_build_object('leadId', v.lead_id)
                         || case when e.channel is null then '{}'::jsonb
                                 else jsonb_build_object('channel', e.channel) end),
             e.since, e.channel::public.channel
      from unnest(v_verdicts) v
      cross join lateral (values ('HotLead24h', v.raise_hot, v.hot_since, v.hot_count, null::text),
                                 ('PreferredChannel', v.raise_pref, v.pref_since, null, v.pref_channel))
        e(type, raise, since, n, channel)
      join public.rules_for(p_tenant) r on r.type = e.type
      where e.raise
      order by v.lead_id, e.type
      returning lead_id, type
    )
    select jsonb_object_agg(c.lead_id, c.types) into v_created
    from (select c.lead_id, jsonb_agg(c.type order by c.type) as types from raised c group by c.lead_id) c;
  end if;

  -- One answer per activity, by its place; a replay answers with what was stored the first time (read
  -- now, in a fresh snapshot: it may have been stored by a transaction that committed meanwhile).
  select jsonb_object_agg(i.ord,
           case when a.id is not null then
             jsonb_build_object('activity', public.activity_json(a),
                                'alerts', jsonb_build_object('created', coalesce(v_created -> a.lead_id, '[]'),
                                                             'resolved', coalesce(v_resolved -> a.lead_id, '[]')),
                                'duplicate', false)
           else
             jsonb_build_object('activity', (select public.activity_json(d) from public.lead_activities d
                                             where d.tenant_id = p_tenant and d.channel = i.channel
                                               and d.external_id = i.external_id),
                                'alerts', jsonb_build_object('created', '[]'::jsonb, 'resolved', '[]'::jsonb),
                                'duplicate', true)
           end)
  into v_results
  from unnest(p_items) i
  left join unnest(v_rows) a on a.lead_id = i.lead_id;
  return v_results;
end
$$;
grant execute on function public.ingest_activities(text, public.activity_in[]) to service_role;
