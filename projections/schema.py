"""The read-model tables, built in generations so a rebuild can swap them in at once.

Each generation ``g`` has its own tables (``harbor_p{g}_members`` …); stable
views (``harbor_members`` …) point at the live generation. A rebuild fills a
new generation beside the live one and replaces the views in one transaction,
so readers see the old tables until the swap and the new ones after it.
"""

from __future__ import annotations

from store.sql import Cursor, Db

STATE_TABLE = "harbor_projection_state"
SCHEMA_LOCK_ID = 0x48415250  # "HARP": serialises DDL across processes on PostgreSQL

# name → column definitions (portable types: TEXT dates and JSON, INTEGER flags).
TABLES: dict[str, str] = {
    "units": (
        "code TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, parent_unit_id TEXT,"
        " region TEXT NOT NULL, registered_on TEXT NOT NULL, dissolved_on TEXT,"
        " successor_unit_id TEXT"
    ),
    "members": (
        "member_id TEXT PRIMARY KEY, name TEXT NOT NULL, standing TEXT NOT NULL,"
        " household_region TEXT NOT NULL, developing_unit_id TEXT, enrolled_on TEXT NOT NULL,"
        " probation_started_on TEXT, probation_end TEXT, holder_unit_id TEXT NOT NULL,"
        " holder_since TEXT NOT NULL, in_transit_to TEXT, letter_no TEXT, letter_issuer TEXT,"
        " letter_valid_until TEXT, open_case_id TEXT, hold_rule TEXT, hold_until TEXT,"
        " version INTEGER NOT NULL, holdings TEXT NOT NULL, signs TEXT NOT NULL"
    ),
    "cases": (
        "case_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, number INTEGER NOT NULL,"
        " opened_on TEXT NOT NULL, first_responder TEXT NOT NULL, closed_on TEXT,"
        " closed_by TEXT, attached_unit_id TEXT, attached_on TEXT, attached_basis TEXT,"
        " last_action_on TEXT NOT NULL, participants TEXT NOT NULL, actions TEXT NOT NULL"
    ),
    "referrals": (
        "member_id TEXT NOT NULL, version INTEGER NOT NULL, case_id TEXT NOT NULL,"
        " from_unit_id TEXT NOT NULL, to_unit_id TEXT NOT NULL, handover TEXT NOT NULL,"
        " reason TEXT NOT NULL, referred_on TEXT NOT NULL, answer TEXT, answered_on TEXT,"
        " answered_version INTEGER, PRIMARY KEY (member_id, version)"
    ),
    "letters": (
        "member_id TEXT NOT NULL, version INTEGER NOT NULL, case_id TEXT NOT NULL,"
        " letter_no TEXT NOT NULL, issuer_unit_id TEXT NOT NULL, to_unit_id TEXT NOT NULL,"
        " issued_on TEXT NOT NULL, valid_until TEXT NOT NULL, status TEXT NOT NULL,"
        " settled_on TEXT, receipt_returned_on TEXT, PRIMARY KEY (member_id, version)"
    ),
    "overrides": (
        "member_id TEXT NOT NULL, version INTEGER NOT NULL, rule TEXT NOT NULL,"
        " unit_id TEXT NOT NULL, occurred_on TEXT NOT NULL, case_id TEXT, reason TEXT NOT NULL,"
        " PRIMARY KEY (member_id, version, rule)"
    ),
    "trail": (
        "position INTEGER PRIMARY KEY, member_id TEXT NOT NULL, version INTEGER NOT NULL,"
        " case_id TEXT, event_type TEXT NOT NULL, unit_id TEXT NOT NULL,"
        " recorded_by TEXT NOT NULL, occurred_on TEXT NOT NULL, recorded_at TEXT NOT NULL,"
        " summary TEXT NOT NULL, voided INTEGER NOT NULL, void_reason TEXT"
    ),
}

INDEXES: dict[str, list[str]] = {
    "members": ["holder_unit_id", "in_transit_to"],
    "cases": ["member_id", "first_responder"],
    "referrals": ["to_unit_id", "from_unit_id", "case_id"],
    "letters": ["to_unit_id", "issuer_unit_id"],
    "trail": ["member_id, version", "case_id"],
}

# What a rebuild's fold itself looks rows up by besides primary keys: rewriting a member
# deletes its rows by member (the other member tables' primary keys start with
# member_id; voiding marks a trail row by its position). The other indexes are built
# after the bulk load, which is far cheaper than maintaining them row by row.
NEEDED_WHILE_LOADING: dict[str, set[str]] = {
    "cases": {"member_id"},  # a member rewritten whole deletes its cases by member
}

# Column order of each table, for inserts, and each column's type as binary COPY sends it.
_DEFINITIONS = {name: ddl.split(", PRIMARY KEY")[0].split(",") for name, ddl in TABLES.items()}
COLUMNS: dict[str, list[str]] = {
    name: [part.strip().split()[0] for part in parts] for name, parts in _DEFINITIONS.items()
}
COPY_TYPES: dict[str, list[str]] = {
    name: ["int4" if " INTEGER" in part else "text" for part in parts]
    for name, parts in _DEFINITIONS.items()
}


def table(generation: int, name: str) -> str:
    """The physical table ``name`` of ``generation``."""
    return f"harbor_p{generation}_{name}"


def view(name: str) -> str:
    """The stable view readers query."""
    return f"harbor_{name}"


def _lock(db: Db, cur: Cursor) -> None:
    if db.backend == "postgres":
        cur.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_ID,))


def create_generation(db: Db, cur: Cursor, generation: int, *, loading: bool = False) -> None:
    """Create the tables of ``generation`` (if missing); ``loading`` leaves out the
    indexes a bulk load does not need (``index_statements`` creates them)."""
    for name, ddl in TABLES.items():
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table(generation, name)} ({ddl})")
    create_indexes(db, cur, generation, loading=loading)


def create_indexes(db: Db, cur: Cursor, generation: int, *, loading: bool = False) -> None:
    """Create the secondary indexes of ``generation`` that are missing."""
    for statement in index_statements(generation, loading=loading):
        cur.execute(statement)


def index_statements(generation: int, *, loading: bool = False) -> list[str]:
    """The statements creating the secondary indexes of ``generation`` (if missing)."""
    return [
        f"CREATE INDEX IF NOT EXISTS {table(generation, name)}_i{i}"
        f" ON {table(generation, name)} ({cols})"
        for name in TABLES
        for i, cols in enumerate(INDEXES.get(name, []))
        if not loading or cols in NEEDED_WHILE_LOADING.get(name, set())
    ]


def point_views_at(db: Db, cur: Cursor, generation: int) -> None:
    """Make the stable views show ``generation`` and record it as live (one transaction)."""
    for name in TABLES:
        cur.execute(f"DROP VIEW IF EXISTS {view(name)}")
        cur.execute(f"CREATE VIEW {view(name)} AS SELECT * FROM {table(generation, name)}")
    cur.execute(f"UPDATE {STATE_TABLE} SET generation = ? WHERE id = 1", (generation,))


def drop_generation(db: Db, cur: Cursor, generation: int) -> None:
    """Drop the tables of a generation no view points at."""
    for name in TABLES:
        cur.execute(f"DROP TABLE IF EXISTS {table(generation, name)}")


def ensure_schema(db: Db) -> int:
    """Create the state table and generation 1 if missing; returns the live generation."""
    with db.transaction() as cur:
        _lock(db, cur)
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (id INTEGER PRIMARY KEY,"
            " generation INTEGER NOT NULL, building INTEGER)"
        )
        cur.execute(f"SELECT generation FROM {STATE_TABLE} WHERE id = 1")
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
        cur.execute(f"INSERT INTO {STATE_TABLE} (id, generation) VALUES (1, 1)")
        create_generation(db, cur, 1)
        point_views_at(db, cur, 1)
        return 1


def lock_state(db: Db, cur: Cursor, *, exclusive: bool) -> tuple[int, int | None]:
    """Lock the state row for this transaction; returns (live, building) as locked.

    A follower's batch takes it shared, a rebuild's swap exclusively: no batch commits
    to the live generation while a swap decides how far the new one must reach. On
    SQLite a write takes the database's lock, so the transaction waits for other
    writers instead of failing later on a snapshot they changed.
    """
    if db.backend == "postgres":
        mode = "UPDATE" if exclusive else "SHARE"
        cur.execute(f"SELECT generation, building FROM {STATE_TABLE} WHERE id = 1 FOR {mode}")
    else:
        cur.execute(f"UPDATE {STATE_TABLE} SET building = building WHERE id = 1")
        cur.execute(f"SELECT generation, building FROM {STATE_TABLE} WHERE id = 1")
    row = cur.fetchone()
    assert row is not None
    return int(row[0]), (int(row[1]) if row[1] is not None else None)


def live_generation(db: Db) -> int:
    """The generation the views show now."""
    rows = db.query(f"SELECT generation FROM {STATE_TABLE} WHERE id = 1")
    return int(rows[0][0])


def start_generation(db: Db, *, loading: bool = False) -> int:
    """Create a fresh generation beside the live one and return its number.

    ``loading``: without the indexes a bulk load does not need; the caller adds
    them (``index_statements``) once it is loaded.
    """
    with db.transaction() as cur:
        _lock(db, cur)
        live, building = lock_state(db, cur, exclusive=True)
        for old in range(1, live):
            drop_generation(db, cur, old)  # keep only the live one; readers use the views
        if building is not None and int(building) > live:
            drop_generation(db, cur, int(building))  # an earlier rebuild that never finished
        new = max(live, int(building or 0)) + 1
        create_generation(db, cur, new, loading=loading)
        cur.execute(f"UPDATE {STATE_TABLE} SET building = ? WHERE id = 1", (new,))
        return new
