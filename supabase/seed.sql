-- Demo data: a small pipeline in tenant `macrea` whose alerts cover every severity at once.
-- One source for both demos: `supabase db reset` loads it after the migrations (config.toml,
-- [db.seed]) and `leadwatch dev` applies this same file. Times are relative to now(); external ids
-- make it idempotent (a second run adds nothing). Runs as the service: through the same functions
-- the API calls, so lead_state, the alerts and their history stay consistent.

select public.upsert_leads('macrea', '[
  {"lead_id": "694d0bed15df5b9e1", "name": "Sophie Martin", "email": "sophie.martin@example.com", "phone": "+33612345678", "value": 4800},
  {"lead_id": "demo-lucas", "name": "Lucas Bernard", "email": "lucas.bernard@example.com", "phone": "+33623456789", "value": 2500},
  {"lead_id": "demo-emma", "name": "Emma Petit", "email": "emma.petit@example.com", "phone": "+33634567890", "value": 7200},
  {"lead_id": "demo-hugo", "name": "Hugo Moreau", "email": "hugo.moreau@example.com", "phone": "+33645678901", "value": 1500},
  {"lead_id": "demo-chloe", "name": "Chloé Dubois", "email": "chloe.dubois@example.com", "phone": "+33656789012", "value": 25000},
  {"lead_id": "demo-lea", "name": "Léa Laurent", "email": "lea.laurent@example.com", "phone": "+33667890123", "value": 3000}
]'::jsonb);

-- The last interactions of each demo lead, and the alert each one leads to.
select public.log_activity('macrea', lead_id, channel, direction, 'sent', snippet, '{"source": "demo"}'::jsonb,
                           now() - make_interval(days => days_ago, hours => 1),
                           format('demo-%s-%s', lead_id, days_ago))
from (values
  ('694d0bed15df5b9e1', 'whatsapp', 'in',  6,  'Bonjour, je voudrais un devis.'),
  ('694d0bed15df5b9e1', 'whatsapp', 'out', 4,  'Bonjour, avez-vous reçu notre devis?'),         -- NoReply3d, med
  ('demo-lucas',        'email',    'in',  9,  'Merci pour la documentation.'),                 -- NoContact7d, med
  ('demo-emma',         'call',     'out', 16, 'Appel de découverte.'),                         -- NoContact7d + NoReply3d, high
  ('demo-hugo',         'email',    'in',  35, 'Je reviens vers vous le mois prochain.'),       -- StaleLead30d, low
  ('demo-chloe',        'whatsapp', 'in',  4,  'Le budget est validé.'),                        -- HighValueRisk, high
  ('demo-lea',          'email',    'out', 5,  'Voici notre proposition.'),
  ('demo-lea',          'email',    'out', 4,  'Avez-vous pu lire la proposition ?'),
  ('demo-lea',          'whatsapp', 'in',  3,  'Je préfère WhatsApp.'),
  ('demo-lea',          'whatsapp', 'in',  2,  'Des questions sur le devis.'),
  ('demo-lea',          'whatsapp', 'in',  1,  'Parfait, à demain !')                           -- PreferredChannel, low
) as demo (lead_id, channel, direction, days_ago, snippet)
order by days_ago desc;

-- Raise the alerts now rather than at the next scheduled sweep.
select public.sweep_alerts('macrea');
