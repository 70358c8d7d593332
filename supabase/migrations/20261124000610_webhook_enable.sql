-- Enabling a webhook endpoint again: a receiver answering 410 Gone disables its endpoint (and
-- nothing is delivered to a disabled one); once the receiver is back, an admin enables it again.
-- Deliveries written before it was disabled and still pending are sent; those that failed stay
-- failed (redeliver them one by one from the delivery log).

-- Functions ---------------------------------------------------------------------------------------

/** Enable (clearing why it was disabled) or disable one of the tenant's endpoints (admins). */
create function public.set_webhook_enabled(p_tenant text, p_webhook_id uuid, p_enabled boolean) returns jsonb
language plpgsql
security definer  -- writes the endpoints, which users cannot write themselves
set search_path = ''
as $$
declare
  v_endpoint public.webhook_endpoints;
begin
  perform public.assert_acts_in(p_tenant, array['admin']);
  if p_enabled is null then
    perform public.raise_error('LW422', 'enabled must be true or false', 'enabled');
  end if;
  update public.webhook_endpoints w
  set enabled = p_enabled, disabled_reason = case when p_enabled then null else 'disabled by an admin' end
  where w.id = p_webhook_id and w.tenant_id = p_tenant
  returning * into v_endpoint;
  if not found then
    perform public.raise_error('LW404', 'webhook not found', 'id');
  end if;
  return jsonb_build_object('webhook',
    public.webhook_json(v_endpoint.id, v_endpoint.url, v_endpoint.events, v_endpoint.enabled,
                        v_endpoint.disabled_reason, v_endpoint.created_at));
end
$$;
grant execute on function public.set_webhook_enabled(text, uuid, boolean) to authenticated, service_role;
