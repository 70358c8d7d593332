#!/usr/bin/env bash
# Deploy leadwatch's functions to Google Cloud Run functions (gen2), one function per group; see --help.
set -euo pipefail
cd "$(dirname "$0")"

FUNCTIONS=(activities alerts leads rules whatsapp health greenapi_webhook email email_webhook webhooks members sweep retention
  notifications)
PRIVATE=(sweep retention notifications)  # called by Cloud Scheduler only (IAM), each on its own schedule below
SECRETS=(SUPABASE_URL SUPABASE_SERVICE_KEY SUPABASE_JWT_SECRET LEADWATCH_SCHEDULER_TOKEN LEADWATCH_GREENAPI_INSTANCES)
# Email (docs/email.md): each given to the functions when the project has it; without them, email is off.
OPTIONAL_SECRETS=(LEADWATCH_SMTP_URL LEADWATCH_EMAIL_FROM LEADWATCH_EMAIL_WEBHOOK_TOKENS)
RUNTIME=python311

usage() {
  cat <<'USAGE'
Usage: ./deploy.sh [--dry-run] [--rollback] [--help]

Deploys one Cloud Run function (gen2) per route group: activities, alerts, leads, rules, whatsapp,
health, greenapi_webhook, email, email_webhook, webhooks, members (public: each verifies its callers),
sweep, retention and
notifications (private), grants the scheduler's service account roles/run.invoker on the private ones,
and creates or updates their Cloud Scheduler jobs: leadwatch-daily-sweep (daily at 09:00
Europe/Paris), leadwatch-nightly-retention (every 10 minutes from 00:00 to 05:50 Europe/Paris, one
bounded batch each) and leadwatch-deliver-notifications (every minute).

Variables:
  PROJECT        Google Cloud project id (required)
  REGION         region (default: europe-west1)
  CORS_ORIGINS   browser origins allowed to call the functions, comma-separated (required)
  SCHEDULER_SA   the service account Cloud Scheduler signs its calls with (required)
  WEBHOOK_ALLOWED_NETWORKS  non-public networks webhooks may be sent to, CIDRs comma-separated
                 (default: none; see docs/security.md)
  PYTHON         the Python that builds the upload (default: python3)

Secrets, in the project's Secret Manager (checked before anything is deployed):
  SUPABASE_URL SUPABASE_SERVICE_KEY SUPABASE_JWT_SECRET LEADWATCH_SCHEDULER_TOKEN LEADWATCH_GREENAPI_INSTANCES
Optional secrets (email, see docs/email.md), given to the functions when the project has them:
  LEADWATCH_SMTP_URL LEADWATCH_EMAIL_FROM LEADWATCH_EMAIL_WEBHOOK_TOKENS

Options:
  --dry-run   print every gcloud command instead of running it (runs none)
  --rollback  route each function's traffic back to its previous revision (needs PROJECT, REGION)
  --help      this text
USAGE
}

dry_run=false
action=deploy
for arg in "$@"; do
  case $arg in
    --help | -h) usage; exit 0 ;;
    --dry-run) dry_run=true ;;
    --rollback) action=rollback ;;
    *) echo "deploy.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

: "${REGION:=europe-west1}"
: "${PYTHON:=python3}"

# show CMD...: print it as a shell would read it back.
show() {
  local words=() word
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then words+=("$word"); else words+=("'${word//\'/\'\\\'\'}'"); fi
  done
  echo "${words[*]}"
}
# run CMD...: run it, or only print it on a dry run.
run() {
  if $dry_run; then show "$@"; else "$@"; fi
}
# value PLACEHOLDER CMD...: the command's output, or (dry run) print the command and answer the placeholder.
exec 3>&1
value() {
  local placeholder=$1; shift
  if $dry_run; then show "$@" >&3; echo "$placeholder"; else "$@"; fi
}

require() {  # require VAR...: name every missing variable, then stop
  local missing=()
  for var in "$@"; do [[ -n "${!var:-}" ]] || missing+=("$var"); done
  if ((${#missing[@]})); then
    for var in "${missing[@]}"; do echo "deploy.sh: missing variable $var (see ./deploy.sh --help)" >&2; done
    exit 2
  fi
}

service_name() { echo "leadwatch-${1//_/-}"; }

if [[ $action == rollback ]]; then
  require PROJECT
  for fn in "${FUNCTIONS[@]}"; do
    name=$(service_name "$fn")
    revisions=$(value "<previous-revision-of-$name>" gcloud run revisions list --service "$name" \
      --project "$PROJECT" --region "$REGION" --sort-by '~metadata.creationTimestamp' --limit 2 \
      --format 'value(metadata.name)')
    previous=$(tail -n +2 <<<"$revisions" | head -n 1)
    $dry_run && previous=$revisions
    if [[ -z $previous ]]; then
      echo "deploy.sh: $name has no previous revision to roll back to" >&2
      exit 1
    fi
    run gcloud run services update-traffic "$name" --project "$PROJECT" --region "$REGION" \
      --to-revisions "$previous=100"
  done
  exit 0
fi

require PROJECT CORS_ORIGINS SCHEDULER_SA

missing=()
for secret in "${SECRETS[@]}"; do
  if $dry_run; then
    show gcloud secrets describe "$secret" --project "$PROJECT" --format 'value(name)'
  elif ! gcloud secrets describe "$secret" --project "$PROJECT" --format 'value(name)' >/dev/null; then
    missing+=("$secret")
  fi
done
if ((${#missing[@]})); then
  for secret in "${missing[@]}"; do
    echo "deploy.sh: missing secret $secret in project $PROJECT: gcloud secrets create $secret --data-file=-" >&2
  done
  exit 2
fi
present=("${SECRETS[@]}")
for secret in "${OPTIONAL_SECRETS[@]}"; do
  if $dry_run; then
    show gcloud secrets describe "$secret" --project "$PROJECT" --format 'value(name)'
    present+=("$secret")
  elif gcloud secrets describe "$secret" --project "$PROJECT" --format 'value(name)' >/dev/null 2>&1; then
    present+=("$secret")
  else
    echo "deploy.sh: no secret $secret in project $PROJECT: deployed without it (email off, see docs/email.md)" >&2
  fi
done

# The upload: functions/main.py, the package, and requirements.txt generated from pyproject.toml.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
"$PYTHON" functions/build.py "$build/src" >/dev/null

secrets=""
for secret in "${present[@]}"; do secrets+="${secrets:+,}$secret=$secret:latest"; done

private() { [[ " ${PRIVATE[*]} " == *" $1 "* ]]; }

env_vars="^;^LEADWATCH_CORS_ORIGINS=$CORS_ORIGINS"
if [[ -n ${WEBHOOK_ALLOWED_NETWORKS:-} ]]; then
  env_vars+=";LEADWATCH_WEBHOOK_ALLOWED_NETWORKS=$WEBHOOK_ALLOWED_NETWORKS"
fi

for fn in "${FUNCTIONS[@]}"; do
  access=--allow-unauthenticated  # each public function verifies its callers itself
  timeout=60s
  if private "$fn"; then access=--no-allow-unauthenticated timeout=540s; fi  # IAM: the scheduler only
  run gcloud functions deploy "$(service_name "$fn")" --gen2 --project "$PROJECT" --region "$REGION" \
    --runtime "$RUNTIME" --source "$build/src" --entry-point "$fn" --trigger-http "$access" \
    --set-secrets "$secrets" --set-env-vars "$env_vars" \
    --memory 256Mi --timeout "$timeout"
done

token=$(value "<scheduler-token>" gcloud secrets versions access latest --secret LEADWATCH_SCHEDULER_TOKEN \
  --project "$PROJECT")

# schedule FUNCTION JOB CRON PATH: only the scheduler's service account may invoke the private
# function; its job calls PATH on CRON (Paris time). IAM checks the scheduler's OIDC token
# (Authorization); leadwatch checks its own scheduler token (X-Scheduler-Token) as well. The job is
# created once and updated on every later deploy.
schedule() {
  local fn=$1 job=$2 cron=$3 path=$4 name url existing verb headers
  name=$(service_name "$fn")
  run gcloud run services add-iam-policy-binding "$name" --project "$PROJECT" --region "$REGION" \
    --member "serviceAccount:$SCHEDULER_SA" --role roles/run.invoker
  url=$(value "<$name-url>" gcloud functions describe "$name" --gen2 --project "$PROJECT" \
    --region "$REGION" --format 'value(serviceConfig.uri)')
  existing=$(value "" gcloud scheduler jobs list --project "$PROJECT" --location "$REGION" \
    --filter "name~/jobs/$job\$" --format 'value(name)')
  if [[ -n $existing ]]; then verb=update headers=--update-headers; else verb=create headers=--headers; fi
  run gcloud scheduler jobs "$verb" http "$job" --project "$PROJECT" --location "$REGION" \
    --schedule "$cron" --time-zone "Europe/Paris" --http-method POST --uri "$url$path" \
    "$headers" "X-Scheduler-Token=$token" \
    --oidc-service-account-email "$SCHEDULER_SA" --oidc-token-audience "$url"
}

schedule sweep leadwatch-daily-sweep "0 9 * * *" /api/alerts/sweep
schedule retention leadwatch-nightly-retention "*/10 0-5 * * *" /api/retention/run
schedule notifications leadwatch-deliver-notifications "* * * * *" /api/notifications/deliver

$dry_run || echo "deployed; check it: leadwatch smoke https://$REGION-$PROJECT.cloudfunctions.net --token \$SERVICE_KEY"
