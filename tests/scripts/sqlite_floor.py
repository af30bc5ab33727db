#!/usr/bin/env python3
"""What SQLite itself costs on this machine for the inbox's write pattern,
with no gateway, no sqlx and no HTTP: the floor under `ionflux-gateway bench`.

    python3 tests/scripts/sqlite_floor.py          # time per row
    python3 tests/scripts/sqlite_floor.py --wal    # WAL bytes per row, by page size
    python3 tests/scripts/sqlite_floor.py --bodies # the body in the inbox row, or apart

Python's sqlite3 module adds little per statement, so these are close to
what the library and the disk give. The table and indexes mirror
migrations/sqlite (the inbox's columns, its unique key and its three
partial indexes on pending rows). Used in BENCHMARKS.md.
"""
import os
import sqlite3
import sys
import tempfile
import time
import uuid

ROWS = 12_800
HEADERS = '{"x-shopify-topic":"orders/create","x-shopify-shop-domain":"a.myshopify.com"}' * 3
COLUMNS = ("connection_id, provider, workspace_id, brand_id, webhook_id, topic, shop_domain,"
           " api_version, triggered_at, shopify_event_id, trace_id, headers, body, received_at")


def insert_sql(body_in_row=True, returning=""):
    """The INSERT of one webhook's values (`webhook_row`)."""
    columns = COLUMNS if body_in_row else COLUMNS.replace(" body,", "")
    places = ",".join("?" * len(columns.split(",")))
    return f"INSERT INTO inbox ({columns}) VALUES ({places}){returning}"


def webhook_row(i, webhook_id, body):
    """One webhook's values for `insert_sql`, of brand `i % 8`; `body` None
    when it is kept apart from the row."""
    row = ["conn-1", "shopify", "ws", f"brand-{i % 8}", webhook_id, "orders/create",
           "a.myshopify.com", "2026-04", "2026-11-23", "1", uuid.uuid4().hex, HEADERS]
    return tuple(row + ([] if body is None else [body]) + [1])


def open_db(path, sync, autocheckpoint=True, page_size=4096, body_in_row=True):
    db = sqlite3.connect(path, isolation_level=None)
    # Before journal_mode, which writes the first page. The gateway creates
    # its databases with 2 KiB pages (host/src/store.rs, sqlite_pragmas);
    # the timings in BENCHMARKS.md's floor table were measured with 4 KiB.
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync}")
    if not autocheckpoint:
        # As the gateway's connections, whose checkpoints run on a thread of
        # their own (host/src/store/checkpoint.rs); none runs here.
        db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(
        """CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, connection_id TEXT,
        provider TEXT, workspace_id TEXT, brand_id TEXT, webhook_id TEXT, topic TEXT,
        shop_domain TEXT, api_version TEXT, triggered_at TEXT, shopify_event_id TEXT,
        trace_id TEXT, headers TEXT, """ + ("body BLOB, " if body_in_row else "") + """
        received_at INTEGER, status TEXT DEFAULT 'pending', next_attempt_at INTEGER DEFAULT 0,
        attempts INTEGER DEFAULT 0, claimed_until INTEGER,
        UNIQUE (connection_id, webhook_id))"""
    )
    # Migration 0009 dropped this one from the gateway; it stays here so that
    # the floor's timings in BENCHMARKS.md (measured with it) stay comparable.
    db.execute("CREATE INDEX a ON inbox (next_attempt_at, id) WHERE status = 'pending'")
    db.execute("CREATE INDEX b ON inbox (brand_id, id) WHERE status = 'pending'")
    db.execute("CREATE INDEX c ON inbox (id) WHERE status = 'pending'")
    return db


def insert(sync, group, body_size, autocheckpoint=True):
    with tempfile.TemporaryDirectory(dir=".") as d:
        db = open_db(os.path.join(d, "floor.db"), sync, autocheckpoint)
        body = os.urandom(body_size)
        started = time.perf_counter()
        for _ in range(ROWS // group):
            rows = [webhook_row(i, str(uuid.uuid4()), body) for i in range(group)]
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert_sql(), rows)
            db.execute("COMMIT")
        per_row = (time.perf_counter() - started) / ROWS * 1e6
        print(f"insert  synchronous={sync:<6} group={group:<4} body={body_size:>5} B"
              f"{'' if autocheckpoint else ' (no checkpoints)'}: "
              f"{per_row:6.1f} µs/row  ({1e6 / per_row:8.0f} rows/s)")


def update(body_size):
    """A claim-like UPDATE of two small columns, 256 rows per transaction."""
    with tempfile.TemporaryDirectory(dir=".") as d:
        db = open_db(os.path.join(d, "floor.db"), "FULL")
        body = os.urandom(body_size)
        db.execute("BEGIN")
        for i in range(ROWS):
            db.execute("INSERT INTO inbox (connection_id, webhook_id, body) VALUES ('c', ?, ?)",
                       (str(i), body))
        db.execute("COMMIT")
        started = time.perf_counter()
        for first in range(1, ROWS + 1, 256):
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE inbox SET claimed_until = 123456789, attempts = attempts + 1"
                       " WHERE id BETWEEN ? AND ?", (first, first + 255))
            db.execute("COMMIT")
        per_row = (time.perf_counter() - started) / ROWS * 1e6
        print(f"update  small columns of a row with a {body_size:>5} B body: {per_row:6.1f} µs/row")


def wal_per_row(random_ids, pending_by_due, page_size=4096, group=14, rows=14_000,
                stored=50_000):
    """WAL bytes one stored webhook costs: `group` rows per commit (the
    intake's average at 32 connections), a 1.7 KB body, after `stored`
    finished rows. SQLite logs whole pages, so every leaf a commit touches
    counts in full: with random webhook ids (Shopify's are UUIDs) each row
    lands on its own leaf of the unique key."""
    with tempfile.TemporaryDirectory(dir=".") as d:
        path = os.path.join(d, "floor.db")
        db = open_db(path, "FULL", autocheckpoint=False, page_size=page_size)
        if not pending_by_due:
            db.execute("DROP INDEX a")
        body = os.urandom(1700)

        def webhooks(n, first):
            return [webhook_row(i, str(uuid.uuid4()) if random_ids else f"{first + i:012d}",
                                body) for i in range(n)]

        sql = insert_sql()
        db.execute("BEGIN")
        db.executemany(sql, webhooks(stored, 0))
        db.execute("UPDATE inbox SET status = 'published'")
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        groups = [webhooks(group, stored + k * group) for k in range(rows // group)]
        started = time.perf_counter()
        for g in groups:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, g)
            db.execute("COMMIT")
        micros = (time.perf_counter() - started) / rows * 1e6
        per_row = os.path.getsize(path + "-wal") / rows
        print(f"{page_size} B pages: WAL per stored webhook, {group} per commit, "
              f"{'random' if random_ids else 'sequential'} webhook ids, "
              f"{'with' if pending_by_due else 'without'} the (next_attempt_at, id) index: "
              f"{per_row:6.0f} B, {micros:5.1f} µs")


def lifecycle(bodies_apart, group=14, batch=64, rows=12_800, stored=50_000):
    """A webhook's whole life in the one writer, per webhook: intake's
    group insert, then the dispatcher's claim (an UPDATE of two small
    columns) and its recording (the event-log copy of the payload and the
    row's outcome), on 2 KiB pages. With `bodies_apart` the body goes to a
    table of its own, written once, so claim and finish rewrite a narrow
    row; intake then pays a second insert per webhook."""
    with tempfile.TemporaryDirectory(dir=".") as d:
        db = open_db(os.path.join(d, "floor.db"), "FULL", page_size=2048,
                     body_in_row=not bodies_apart)
        # The inbox as of migration 0009, with the columns the finish sets.
        db.execute("DROP INDEX a")
        db.execute("ALTER TABLE inbox ADD COLUMN finished_at INTEGER")
        db.execute("ALTER TABLE inbox ADD COLUMN deliveries TEXT")
        db.execute("CREATE TABLE bodies (inbox_id INTEGER PRIMARY KEY, body BLOB)")
        db.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE,"
            " topic TEXT, key TEXT, headers TEXT, payload TEXT, payload_zstd BLOB,"
            " created_at INTEGER, workspace_id TEXT)"
        )
        body = os.urandom(1700)
        sql = insert_sql(body_in_row=not bodies_apart, returning=" RETURNING id")

        def intake(n):
            db.execute("BEGIN IMMEDIATE")
            for i in range(n):
                row = webhook_row(i, str(uuid.uuid4()), None if bodies_apart else body)
                inbox_id = db.execute(sql, row).fetchone()[0]
                if bodies_apart:
                    db.execute("INSERT INTO bodies VALUES (?, ?)", (inbox_id, body))
            db.execute("COMMIT")

        for _ in range(stored // 1000):
            intake(1000)
        db.execute("UPDATE inbox SET status = 'published'")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        intake_s = dispatch_s = 0.0
        done = seq = 0
        while done < rows:
            started = time.perf_counter()
            for _ in range(batch // group + 1):
                intake(group)
            claimed = time.perf_counter()
            intake_s += claimed - started
            ids = [r[0] for r in db.execute(
                "SELECT id FROM inbox WHERE status = 'pending' ORDER BY id LIMIT ?", (batch,))]
            listed = ",".join(map(str, ids))
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE inbox SET claimed_until = 1, attempts = attempts + 1"
                       f" WHERE id IN ({listed})")
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")
            for _ in ids:
                seq += 1
                db.execute("INSERT INTO events (event_id, topic, key, headers, payload,"
                           " payload_zstd, created_at, workspace_id) VALUES (?,?,?,?,?,?,?,?)",
                           (f"{time.time_ns():020d}{seq:012d}", "t", "k", "{}", "", body, 1,
                            "ws"))
            db.execute("UPDATE inbox SET status = 'published', finished_at = 1,"
                       " claimed_until = NULL,"
                       " deliveries = '[{\"topic\":\"t\",\"partition\":0,\"offset\":1}]'"
                       f" WHERE id IN ({listed})")
            db.execute("COMMIT")
            dispatch_s += time.perf_counter() - claimed
            done += len(ids)
        print(f"{'body apart' if bodies_apart else 'body in the row'}: intake "
              f"{intake_s / done * 1e6:5.1f} µs, claim + record {dispatch_s / done * 1e6:5.1f} µs,"
              f" together {(intake_s + dispatch_s) / done * 1e6:5.1f} µs per webhook")


if __name__ == "__main__" and "--bodies" in sys.argv:
    print(f"sqlite {sqlite3.sqlite_version}, in {os.getcwd()}")
    for _ in range(2):
        lifecycle(False)
        lifecycle(True)
elif __name__ == "__main__" and "--wal" in sys.argv:
    print(f"sqlite {sqlite3.sqlite_version}, in {os.getcwd()}")
    for random_ids in (True, False):
        for pending_by_due in (True, False):
            wal_per_row(random_ids, pending_by_due)
    # The gateway's pages since it left 4 KiB (migrations as of 0009).
    for page_size in (2048, 1024):
        wal_per_row(True, False, page_size=page_size)
elif __name__ == "__main__":
    print(f"sqlite {sqlite3.sqlite_version}, {ROWS} rows per line, in {os.getcwd()}")
    insert("FULL", 32, 6000)
    insert("FULL", 256, 6000)
    insert("NORMAL", 32, 6000)
    insert("OFF", 256, 6000)
    insert("FULL", 32, 100)
    # A 6 KB Shopify body as the gateway stores it (zstd, host/src/store/blob.rs).
    insert("FULL", 32, 1700)
    insert("FULL", 32, 6000, autocheckpoint=False)
    insert("FULL", 32, 1700, autocheckpoint=False)
    update(6000)
    update(1700)
    update(100)
