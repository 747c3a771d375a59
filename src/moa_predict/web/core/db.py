"""The web app's SQLite database: one file in the data directory, WAL mode, schema versioned by
``PRAGMA user_version`` and migrated forward on start.

The standard library's ``sqlite3``, not SQLAlchemy: one file, two small tables, a handful of statements; an
ORM would add a dependency and a layer without removing any code. One connection per process, shared by the
threads behind a lock (SQLite serialises writers anyway); WAL lets a reader never wait for a writer, and
``synchronous=NORMAL`` in WAL mode loses no committed transaction when the process is killed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "moa-predict.sqlite3"

MIGRATIONS: list[str] = [
    # 1: results (metadata; the arrays live in files named by id) and background jobs
    """
    CREATE TABLE results (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        created REAL NOT NULL,
        seconds REAL NOT NULL,
        n_rows INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        extra_columns TEXT NOT NULL,
        has_features INTEGER NOT NULL,
        expired REAL
    );
    CREATE INDEX results_created ON results (created);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        stage TEXT NOT NULL,
        progress REAL NOT NULL,
        message TEXT,
        result_id TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    """,
    # 2: which of the served models answered a result (or a job will): NULL for rows of older servers
    """
    ALTER TABLE results ADD COLUMN model TEXT;
    ALTER TABLE jobs ADD COLUMN model TEXT;
    """,
]
"""Migration i brings the schema from version i to i + 1; never edit one that has shipped, append."""

SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """A thread-safe handle on the data directory's SQLite file."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        migrate(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One autocommitted statement; the number of rows it changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this file has not had yet, each in its own transaction; the version reached.

    A database newer than this code is refused (its tables may mean something else)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"the data directory's database has schema version {version}, newer than this "
                           f"moa-predict knows ({SCHEMA_VERSION}); upgrade moa-predict or use another --data-dir.")
    for target in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return SCHEMA_VERSION
