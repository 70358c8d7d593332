"""Demo leads for `leadwatch dev`: a small pipeline whose alerts cover every severity at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .models import ActivityIn, Channel, Direction, LeadIn
from .store import Store

DEMO_TENANT = "macrea"

_LEADS = [
    LeadIn(
        leadId="694d0bed15df5b9e1",
        name="Sophie Martin",
        email="sophie.martin@example.com",
        phone="+33612345678",
        value=4800,
    ),
    LeadIn(
        leadId="demo-lucas", name="Lucas Bernard", email="lucas.bernard@example.com", phone="+33623456789", value=2500
    ),
    LeadIn(leadId="demo-emma", name="Emma Petit", email="emma.petit@example.com", phone="+33634567890", value=7200),
    LeadIn(leadId="demo-hugo", name="Hugo Moreau", email="hugo.moreau@example.com", phone="+33645678901", value=1500),
    LeadIn(
        leadId="demo-chloe", name="Chloé Dubois", email="chloe.dubois@example.com", phone="+33656789012", value=25000
    ),
    LeadIn(leadId="demo-lea", name="Léa Laurent", email="lea.laurent@example.com", phone="+33667890123", value=3000),
]

# (lead, channel, direction, days ago, snippet): the last interactions of each demo lead.
_HISTORY: list[tuple[str, Channel, Direction, int, str]] = [
    ("694d0bed15df5b9e1", "whatsapp", "in", 6, "Bonjour, je voudrais un devis."),
    ("694d0bed15df5b9e1", "whatsapp", "out", 4, "Bonjour, avez-vous reçu notre devis?"),  # NoReply3d, med
    ("demo-lucas", "email", "in", 9, "Merci pour la documentation."),  # NoContact7d, med
    ("demo-emma", "call", "out", 16, "Appel de découverte."),  # NoContact7d + NoReply3d, high
    ("demo-hugo", "email", "in", 35, "Je reviens vers vous le mois prochain."),  # StaleLead30d, low
    ("demo-chloe", "whatsapp", "in", 4, "Le budget est validé."),  # HighValueRisk, high
    ("demo-lea", "whatsapp", "in", 1, "Parfait, à demain !"),  # nothing to say
]


def load_demo(store: Store, tenant: str = DEMO_TENANT) -> dict:
    """Load the demo leads and their history (idempotent), then sweep so the alerts show at once."""
    store.upsert_leads(tenant, _LEADS)
    now = datetime.now(UTC)
    for lead_id, channel, direction, days_ago, snippet in _HISTORY:
        store.log_activity(
            tenant,
            ActivityIn(
                leadId=lead_id,
                channel=channel,
                direction=direction,
                messageSnippet=snippet,
                occurredAt=now - timedelta(days=days_ago, hours=1),
                externalId=f"demo-{lead_id}-{days_ago}",
                meta={"source": "demo"},
            ),
        )
    return store.sweep(tenant)
