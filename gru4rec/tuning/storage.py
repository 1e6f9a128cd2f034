"""Where a study lives: in memory, an Optuna journal file, or a database (SQLite, PostgreSQL,
MySQL) that several workers share. URLs are checked before the first trial; passwords never
appear in messages."""
import importlib.util
import os
import random
import re
import time
import warnings
from pathlib import Path

STORAGES = ("sqlite:///FILE, journal:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DB "
            "or mysql+pymysql://USER:PASSWORD@HOST:PORT/DB")
# dialect[+driver] -> (modules of which one must be installed, how to install one)
DRIVERS = {
    "postgresql": (("psycopg", "psycopg2"), "for PostgreSQL: pip install psycopg2-binary"),
    "postgresql+psycopg2": (("psycopg2",), "for PostgreSQL: pip install psycopg2-binary"),
    "postgresql+psycopg": (("psycopg",), "for PostgreSQL: pip install 'psycopg[binary]'"),
    "mysql": (("MySQLdb",), "for MySQL: pip install mysqlclient, or pip install PyMySQL and write mysql+pymysql://"),
    "mysql+mysqldb": (("MySQLdb",), "for MySQL: pip install mysqlclient"),
    "mysql+pymysql": (("pymysql",), "for MySQL: pip install PyMySQL"),
}


def mask_url(url):
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def pick_postgres_driver(url):
    """postgresql:// (or postgres://) without a driver name: SQLAlchemy 2.1 defaults to psycopg 3;
    use psycopg2 when only that one is installed."""
    m = re.match(r"^postgres(?:ql)?://", url)
    if not m:
        return url
    driver = "psycopg2" if importlib.util.find_spec("psycopg") is None and \
        importlib.util.find_spec("psycopg2") is not None else None
    return ("postgresql+" + driver if driver else "postgresql") + "://" + url[m.end():]


def _scheme(url):
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.split(":", 1)[0].lower()
    return "postgresql" + scheme[len("postgres"):] if re.match(r"postgres(\+|$)", scheme) else scheme


def driver_hint(url):
    """How to install the database driver a storage URL needs."""
    scheme = _scheme(url)
    if scheme in DRIVERS:
        return DRIVERS[scheme][1]
    return {"postgresql": DRIVERS["postgresql"][1], "mysql": DRIVERS["mysql"][1]}.get(
        scheme.split("+")[0], "install the database driver its URL names")


def storage_file(url):
    """The file of a sqlite:// or journal: storage (None for other storages and in-memory SQLite)."""
    if url.startswith("journal:"):
        return re.sub(r"^journal:(//)?", "", url) or None
    if _scheme(url).split("+")[0] == "sqlite":
        from sqlalchemy.engine import make_url
        try:
            db = make_url(url).database
        except Exception:
            return None
        return None if not db or db == ":memory:" or db.startswith("file:") else db
    return None


def check_storage(url):
    """Refuses, with one line, a storage URL paropt cannot use: an unsupported scheme, a missing
    database driver, or a sqlite/journal file in a directory that does not exist (neither is
    created: a typo must not start a new study in the wrong place)."""
    scheme = _scheme(url)
    dialect = scheme.split("+")[0]
    if dialect not in ("sqlite", "postgresql", "mysql", "journal") or (dialect == "journal" and "+" in scheme):
        raise ValueError(f"Unsupported --storage URL {mask_url(url)}: use {STORAGES}")
    if url.startswith("journal:") and storage_file(url) is None:
        raise ValueError("journal storage needs a file: journal:///path/to/study.log")
    path = storage_file(url)
    if path is not None:
        parent = Path(path).parent
        if not parent.is_dir():
            raise ValueError(f"Cannot open the storage {mask_url(url)}: the directory {parent} does not exist")
        if Path(path).is_dir():
            raise ValueError(f"Cannot open the storage {mask_url(url)}: {path} is a directory")
        if not os.access(parent, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            raise ValueError(f"Cannot open the storage {mask_url(url)}: the directory {parent} is not writable")
    if scheme in DRIVERS:
        modules, hint = DRIVERS[scheme]
        if all(importlib.util.find_spec(m) is None for m in modules):
            raise ValueError(f"Cannot open the storage {mask_url(url)}: the database driver is missing "
                             f"({' or '.join(modules)}); {hint}")


def open_storage(url):
    """None (in memory), a journal file (journal:///path) or an RDB URL (sqlite, postgresql, mysql)."""
    if url is None:
        return None
    if url.startswith("journal:"):
        return _journal(url)
    return _database(pick_postgres_driver(url))


def _journal(url):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    path = storage_file(url)
    if not path:
        raise ValueError("journal storage needs a file: journal:///path/to/study.log")
    if not Path(path).parent.is_dir():  # as SQLite does: a missing directory is an error
        raise ValueError(f"Cannot open the storage {url}: the directory {Path(path).parent} does not exist")
    return JournalStorage(JournalFileBackend(path))


def _database(url):
    """An RDBStorage; workers started together race to create the tables of a new database,
    and the loser retries."""
    import optuna
    engine_kwargs = None
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 300}}  # several writers wait instead of failing
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # The heartbeat marks trials of a worker that died (RUNNING forever otherwise) as FAILED.
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=60, grace_period=300)
        except Exception as e:
            racing = type(e).__module__.split(".")[0] == "sqlalchemy" and any(
                m in str(e).lower() for m in ("already exists", "duplicate", "unique", "locked"))
            if not racing or attempt == 5:
                raise
            time.sleep(0.5 + random.random())
