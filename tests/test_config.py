"""Configuration: read once, validated, and failing loudly with the name of what is missing."""

from __future__ import annotations

import pytest
from leadwatch import ConfigError, PostgresStore, SupabaseStore, load_settings, make_store


def test_database_url_chooses_postgres():
    store = make_store(load_settings({"DATABASE_URL": "postgresql://localhost/leadwatch"}))
    assert isinstance(store, PostgresStore)


def test_supabase_url_and_key_choose_supabase():
    settings = load_settings({"SUPABASE_URL": "https://p.supabase.co", "SUPABASE_SERVICE_KEY": "k"})
    assert isinstance(make_store(settings), SupabaseStore)


def test_supabase_url_without_key_names_the_key():
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_KEY"):
        load_settings({"SUPABASE_URL": "https://p.supabase.co"})


def test_no_backend_names_what_to_set():
    with pytest.raises(ConfigError, match="SUPABASE_URL and SUPABASE_SERVICE_KEY, or DATABASE_URL"):
        make_store(load_settings({}))


@pytest.mark.parametrize(("name", "value"), [("PORT", "eighty"), ("LEADWATCH_DB_TIMEOUT", "-1")])
def test_malformed_number_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
