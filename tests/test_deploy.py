"""deploy.sh, run for real with a recording `gcloud` stand-in first on PATH."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRETS = [
    "SUPABASE_URL",
    "SUPABASE_SERVICE_KEY",
    "SUPABASE_JWT_SECRET",
    "LEADWATCH_SCHEDULER_TOKEN",
    "LEADWATCH_GREENAPI_INSTANCES",
]
OPTIONAL_SECRETS = ["LEADWATCH_SMTP_URL", "LEADWATCH_EMAIL_FROM", "LEADWATCH_EMAIL_WEBHOOK_TOKENS"]
FUNCTIONS = ["activities", "alerts", "leads", "rules", "whatsapp", "health", "greenapi_webhook", "email"]
FUNCTIONS += ["email_webhook", "webhooks", "members"]
FUNCTIONS += ["sweep", "retention", "notifications"]
PRIVATE = {
    "sweep": ("leadwatch-daily-sweep", "0 9 * * *", "/api/alerts/sweep"),
    "retention": ("leadwatch-nightly-retention", "*/10 0-5 * * *", "/api/retention/run"),
    "notifications": ("leadwatch-deliver-notifications", "* * * * *", "/api/notifications/deliver"),
}
SWEEP_URL = "https://leadwatch-sweep-abc123-ew.a.run.app"
VARIABLES = {"PROJECT": "acme-prod", "REGION": "europe-west1", "CORS_ORIGINS": "https://app.example.com"}
VARIABLES["SCHEDULER_SA"] = "scheduler@acme-prod.iam.gserviceaccount.com"

FAKE_GCLOUD = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["GCLOUD_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
fail = os.environ.get("FAKE_GCLOUD_FAIL")
if fail and " ".join(args).startswith(fail):
    sys.exit(print("ERROR: (gcloud) PERMISSION_DENIED: the caller lacks a permission", file=sys.stderr) or 1)
if args[:2] == ["secrets", "describe"]:
    if args[2] in os.environ.get("FAKE_MISSING_SECRETS", "").split():
        print(f"ERROR: (gcloud.secrets.describe) NOT_FOUND: Secret [{{args[2]}}]", file=sys.stderr)
        sys.exit(1)
    print("projects/acme-prod/secrets/" + args[2])
elif args[:2] == ["functions", "describe"]:
    print("{SWEEP_URL}".replace("leadwatch-sweep", args[2]))
elif args[:3] == ["secrets", "versions", "access"]:
    print("the-scheduler-token")
elif args[:3] == ["scheduler", "jobs", "list"] and os.environ.get("FAKE_JOB_EXISTS"):
    job = args[args.index("--filter") + 1].split("/jobs/")[1].rstrip("$")
    print("projects/acme-prod/locations/europe-west1/jobs/" + job)
elif args[:3] == ["run", "revisions", "list"]:
    service = args[args.index("--service") + 1]
    print(service + "-00003-new")
    if service not in os.environ.get("FAKE_NO_PREVIOUS", ""):
        print(service + "-00002-old")
"""


@pytest.fixture
def deploy(tmp_path):
    """deploy(*args, **env) -> (result, recorded gcloud argv lists)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"

    def run(*args, **env):
        log.write_text("")
        base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        result = subprocess.run(
            [str(ROOT / "deploy.sh"), *args],
            capture_output=True,
            text=True,
            env={**base, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GCLOUD_LOG": str(log), **env},
            timeout=60,
        )
        return result, [json.loads(line) for line in log.read_text().splitlines()]

    return run


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_help_explains_and_touches_nothing(deploy):
    result, calls = deploy("--help", **VARIABLES)
    assert result.returncode == 0 and result.stdout.startswith("Usage: ./deploy.sh")
    for name in [
        *SECRETS,
        *OPTIONAL_SECRETS,
        "PROJECT",
        "REGION",
        "CORS_ORIGINS",
        "SCHEDULER_SA",
        "--dry-run",
        "--rollback",
    ]:
        assert name in result.stdout, name
    assert calls == []


def test_missing_variables_are_each_named_before_any_gcloud_call(deploy):
    result, calls = deploy(REGION="europe-west1")
    assert result.returncode == 2 and calls == []
    for name in ("PROJECT", "CORS_ORIGINS", "SCHEDULER_SA"):
        assert f"missing variable {name}" in result.stderr


def test_missing_secrets_are_each_named_and_nothing_is_deployed(deploy):
    result, calls = deploy(**VARIABLES, FAKE_MISSING_SECRETS="SUPABASE_JWT_SECRET LEADWATCH_GREENAPI_INSTANCES")
    assert result.returncode == 2
    assert "missing secret SUPABASE_JWT_SECRET" in result.stderr
    assert "missing secret LEADWATCH_GREENAPI_INSTANCES" in result.stderr
    assert "missing secret SUPABASE_URL" not in result.stderr
    assert [c[:3] for c in calls] == [["secrets", "describe", s] for s in SECRETS]


def test_the_email_secrets_are_optional(deploy):
    """A project without the email secrets deploys without them (email off), naming each one left out."""
    result, calls = deploy(**VARIABLES, FAKE_MISSING_SECRETS="LEADWATCH_SMTP_URL LEADWATCH_EMAIL_WEBHOOK_TOKENS")
    assert result.returncode == 0, result.stderr
    assert (
        "no secret LEADWATCH_SMTP_URL" in result.stderr and "no secret LEADWATCH_EMAIL_WEBHOOK_TOKENS" in result.stderr
    )
    assert "LEADWATCH_EMAIL_FROM" not in result.stderr
    deploys = [c for c in calls if c[:2] == ["functions", "deploy"]]
    assert len(deploys) == len(FUNCTIONS)
    for call in deploys:
        expected = [*SECRETS, "LEADWATCH_EMAIL_FROM"]
        assert _flag(call, "--set-secrets") == ",".join(f"{s}={s}:latest" for s in expected)


def test_deploy_runs_every_function_grants_the_scheduler_and_creates_the_job(deploy):
    result, calls = deploy(**VARIABLES)
    assert result.returncode == 0, result.stderr
    deploys = [c for c in calls if c[:2] == ["functions", "deploy"]]
    assert [c[2] for c in deploys] == [f"leadwatch-{f.replace('_', '-')}" for f in FUNCTIONS]
    for call, function in zip(deploys, FUNCTIONS, strict=True):
        assert _flag(call, "--entry-point") == function and "--gen2" in call
        assert _flag(call, "--set-secrets") == ",".join(f"{s}={s}:latest" for s in [*SECRETS, *OPTIONAL_SECRETS])
        assert _flag(call, "--set-env-vars") == "^;^LEADWATCH_CORS_ORIGINS=https://app.example.com"
        public = "--no-allow-unauthenticated" not in call
        assert public == (function not in PRIVATE) and public == ("--allow-unauthenticated" in call)
    bindings = [c for c in calls if "add-iam-policy-binding" in c]
    jobs = [c for c in calls if c[:3] == ["scheduler", "jobs", "create"]]
    assert len(bindings) == len(jobs) == len(PRIVATE)
    for function, binding, job in zip(PRIVATE, bindings, jobs, strict=True):
        name, cron, path = PRIVATE[function]
        url = SWEEP_URL.replace("leadwatch-sweep", f"leadwatch-{function}")
        assert binding[:4] == ["run", "services", "add-iam-policy-binding", f"leadwatch-{function}"]
        assert _flag(binding, "--role") == "roles/run.invoker"
        assert _flag(binding, "--member") == f"serviceAccount:{VARIABLES['SCHEDULER_SA']}"
        assert job[3:5] == ["http", name]
        assert _flag(job, "--uri") == f"{url}{path}"
        assert _flag(job, "--headers") == "X-Scheduler-Token=the-scheduler-token"
        assert _flag(job, "--oidc-service-account-email") == VARIABLES["SCHEDULER_SA"]
        assert _flag(job, "--oidc-token-audience") == url
        assert (_flag(job, "--schedule"), _flag(job, "--time-zone")) == (cron, "Europe/Paris")
        assert calls.index(deploys[-1]) < calls.index(binding) < calls.index(job)


def test_the_upload_is_the_built_artifact(deploy, tmp_path):
    """deploy.sh uploads what functions/build.py builds (the folder the artifact test serves)."""
    bin_dir = tmp_path / "bin"
    (bin_dir / "gcloud").write_text(
        FAKE_GCLOUD + "\nif args[:2] == ['functions', 'deploy']:\n"
        "    import shutil; src = args[args.index('--source') + 1]\n"
        f"    shutil.copytree(src, {str(tmp_path / 'uploaded')!r}, dirs_exist_ok=True)\n"
    )
    result, _ = deploy(**VARIABLES)
    assert result.returncode == 0, result.stderr
    uploaded = tmp_path / "uploaded"
    assert (uploaded / "main.py").is_file() and (uploaded / "leadwatch" / "http" / "app.py").is_file()
    assert "stamina" in (uploaded / "requirements.txt").read_text()


def test_a_second_deploy_updates_the_scheduler_job(deploy):
    result, calls = deploy(**VARIABLES, FAKE_JOB_EXISTS="1")
    assert result.returncode == 0, result.stderr
    jobs = [c for c in calls if c[:2] == ["scheduler", "jobs"] and c[2] in ("create", "update")]
    assert [j[4] for j in jobs] == [job for job, _, _ in PRIVATE.values()]
    for job in jobs:
        assert job[2] == "update" and _flag(job, "--update-headers") == "X-Scheduler-Token=the-scheduler-token"


@pytest.mark.parametrize("failing", ["scheduler jobs create", "run services add-iam-policy-binding"])
def test_a_failing_gcloud_command_stops_the_deploy_and_shows_its_error(deploy, failing):
    result, calls = deploy(**VARIABLES, FAKE_GCLOUD_FAIL=failing)
    assert result.returncode != 0
    assert "PERMISSION_DENIED" in result.stderr
    assert " ".join(calls[-1]).startswith(failing)


def test_dry_run_prints_every_command_of_a_real_run_and_runs_none(deploy):
    dry, dry_calls = deploy("--dry-run", **VARIABLES)
    assert dry.returncode == 0, dry.stderr
    assert dry_calls == []
    _, real_calls = deploy(**VARIABLES)
    printed = [shlex.split(line)[1:] for line in dry.stdout.splitlines() if line.startswith("gcloud ")]

    def same(argv: list[str]) -> list[str]:  # what only a real run knows: the temp folder, fetched values
        text = json.dumps(argv)
        text = re.sub(r'"/tmp/[^"]*/src"', '"SRC"', text)
        for function in PRIVATE:
            url = SWEEP_URL.replace("leadwatch-sweep", f"leadwatch-{function}")
            text = text.replace(url, f"<leadwatch-{function}-url>")
        text = text.replace("the-scheduler-token", "<scheduler-token>")
        return json.loads(text)

    assert [same(c) for c in printed] == [same(c) for c in real_calls]


def test_rollback_routes_each_function_to_its_previous_revision(deploy):
    result, calls = deploy("--rollback", PROJECT="acme-prod")
    assert result.returncode == 0, result.stderr
    updates = [c for c in calls if c[:3] == ["run", "services", "update-traffic"]]
    assert [(c[3], _flag(c, "--to-revisions")) for c in updates] == [
        (f"leadwatch-{f.replace('_', '-')}", f"leadwatch-{f.replace('_', '-')}-00002-old=100") for f in FUNCTIONS
    ]


def test_rollback_without_a_previous_revision_says_so(deploy):
    result, calls = deploy("--rollback", PROJECT="acme-prod", FAKE_NO_PREVIOUS="leadwatch-activities")
    assert result.returncode == 1 and "leadwatch-activities has no previous revision" in result.stderr
    assert not any(c[:3] == ["run", "services", "update-traffic"] for c in calls)


def test_deploy_docs_match_deploy_sh(deploy):
    """The deploy guide (docs/deploy-and-supabase.md, section Deploy) names what deploy.sh requires."""
    guide = (ROOT / "docs" / "deploy-and-supabase.md").read_text()
    section = guide.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    help_text = deploy("--help")[0].stdout
    required = re.findall(r"^  (\w+) .*\(required\)$", help_text, re.MULTILINE)
    assert required == ["PROJECT", "CORS_ORIGINS", "SCHEDULER_SA"]
    lines = re.sub(r"\\\n\s*", " ", section).splitlines()
    [command] = [line for line in lines if line.strip().endswith("./deploy.sh") and "PROJECT=" in line]
    assert set(re.findall(r"\b([A-Z_]+)=", command)) >= set(required)
    for name in [*SECRETS, "--dry-run", "--rollback", "roles/run.invoker", "leadwatch smoke"]:
        assert name in section, name


def test_the_operators_allowed_networks_reach_every_function(deploy):
    result, calls = deploy(**VARIABLES, WEBHOOK_ALLOWED_NETWORKS="10.20.0.0/16,fd00:20::/32")
    assert result.returncode == 0, result.stderr
    deploys = [c for c in calls if c[:2] == ["functions", "deploy"]]
    assert len(deploys) == len(FUNCTIONS)
    for call in deploys:
        assert _flag(call, "--set-env-vars") == (
            "^;^LEADWATCH_CORS_ORIGINS=https://app.example.com;LEADWATCH_WEBHOOK_ALLOWED_NETWORKS=10.20.0.0/16,fd00:20::/32"
        )
