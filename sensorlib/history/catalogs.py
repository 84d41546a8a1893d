"""Where the archive's Iceberg catalog is, from the settings alone (no pyiceberg, no pandas:
``sensorlib status`` and ``up`` name it without importing the query layer)."""

from __future__ import annotations

from pathlib import Path

from sensorlib.config import Settings, mask_uri

__all__ = ["catalog_path", "catalog_sqlite", "catalog_uri", "describe_catalog"]


def catalog_path(settings: Settings) -> Path:
    """The sqlite file of the archive's Iceberg SQL catalog (when no
    ``SENSORLIB_CATALOG_URI`` puts it elsewhere)."""
    return settings.warehouse / "catalog.db"


def catalog_uri(settings: Settings) -> str:
    """The SQLAlchemy URL of the archive's Iceberg catalog: ``SENSORLIB_CATALOG_URI``
    (``postgresql://`` and ``postgres://`` mean psycopg 3, the driver sensorlib installs),
    else the sqlite file :func:`catalog_path`. Mask it (:func:`~sensorlib.config.mask_uri`)
    before showing it: it may hold a password."""
    uri = settings.catalog_uri
    if not uri:
        return f"sqlite:///{catalog_path(settings).resolve()}"
    scheme, sep, rest = uri.partition("://")
    if scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg{sep}{rest}"
    return uri


def catalog_sqlite(settings: Settings) -> Path | None:
    """The sqlite file of the catalog, or None when it is on a database server."""
    uri = catalog_uri(settings)
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def describe_catalog(settings: Settings) -> str:
    """The catalog in words, password masked: ``sqlite file …`` or the server's URL."""
    path = catalog_sqlite(settings)
    return f"sqlite {path}" if path is not None else mask_uri(catalog_uri(settings))
