"""SENSORLIB_CATALOG_URI and SENSORLIB_DB_PORT: read, checked, passed on, never shown whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorlib.config import Settings, mask_uri
from sensorlib.errors import ConfigError, DatabaseError
from sensorlib.history.postgres import find_binaries, server_uri
from sensorlib.history.query import catalog_sqlite, catalog_uri, describe_catalog

SECRET = "s3cr3t-pw"


def test_the_default_is_the_sqlite_file_in_the_warehouse(tmp_path: Path) -> None:
    settings = Settings.from_env({"SENSORLIB_WAREHOUSE": str(tmp_path)})
    assert settings.catalog_uri is None and settings.db_port == 5433
    assert catalog_uri(settings) == f"sqlite:///{tmp_path.resolve() / 'catalog.db'}"
    assert catalog_sqlite(settings) == tmp_path.resolve() / "catalog.db"


@pytest.mark.parametrize("given", [f"postgresql://me:{SECRET}@db:5432/cat",
                                   f"postgres://me:{SECRET}@db:5432/cat",
                                   f"postgresql+psycopg://me:{SECRET}@db:5432/cat"])
def test_a_postgres_url_uses_psycopg_and_is_shown_masked(given: str) -> None:
    settings = Settings.from_env({"SENSORLIB_CATALOG_URI": given, "SENSORLIB_DB_PORT": "6543"})
    assert settings.db_port == 6543
    assert catalog_uri(settings) == f"postgresql+psycopg://me:{SECRET}@db:5432/cat"
    assert catalog_sqlite(settings) is None
    assert describe_catalog(settings) == "postgresql+psycopg://me:***@db:5432/cat"
    assert SECRET not in repr(settings) and SECRET not in str(settings.describe())
    # A child process gets the same catalog (sensorlib up, papermill, the archiver's tests).
    assert Settings.from_env(settings.to_env()).catalog_uri == given


@pytest.mark.parametrize("bad", ["mysql://db/cat", "catalog.db", "postgresql://", "sqlite://"])
def test_an_unusable_url_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="SENSORLIB_CATALOG_URI must be a SQLAlchemy URL"):
        Settings.from_env({"SENSORLIB_CATALOG_URI": bad})


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SENSORLIB_CATALOG_URI": f"mysql://me:{SECRET}@db/cat"})
    assert SECRET not in str(caught.value) and "me:***@db" in str(caught.value)


@pytest.mark.parametrize("port", ["0", "70000", "x"])
def test_a_bad_db_port_is_refused(port: str) -> None:
    with pytest.raises(ConfigError, match="SENSORLIB_DB_PORT"):
        Settings.from_env({"SENSORLIB_DB_PORT": port})


@pytest.mark.parametrize(("uri", "shown"), [
    (f"postgresql://me:{SECRET}@h/d", "postgresql://me:***@h/d"),
    (f"postgresql://me:p/w@{SECRET}@h:1/d", "postgresql://me:***@h:1/d"),  # "/" and "@" in it
    (f"postgresql://h/d?sslmode=require&password={SECRET}",
     "postgresql://h/d?sslmode=require&password=***"),
    ("postgresql://me@h/d", "postgresql://me@h/d"),
    ("sqlite:////w/catalog.db", "sqlite:////w/catalog.db"),
    ("not a url", "not a url"),
])
def test_mask_uri(uri: str, shown: str) -> None:
    assert mask_uri(uri) == shown


def test_missing_server_programs_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="apt-get install postgresql") as caught:
        find_binaries([tmp_path])
    assert caught.value.exit_code == 7


def test_the_local_url() -> None:
    assert server_uri("127.0.0.1", 5433) == "postgresql+psycopg://sensorlib@127.0.0.1:5433/sensorlib"

