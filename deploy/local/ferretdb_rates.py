"""Rates of the test server's hot operations: update_one and bulk updates by `_id`.

Usage: .venv/bin/python deploy/local/ferretdb_rates.py [--url URL] [--docs N] [--batch B]...

A tool for the local test server (FerretDB/SQLite), not part of the packages: it talks to
pymongo directly and uses a throwaway database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import time

from pymongo import MongoClient, UpdateOne


def main() -> int:
    """Print one line per measured operation: its rate in documents per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("DOSSIERFLOW_MONGO_URL", "mongodb://127.0.0.1:27017/")
    )
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch", type=int, action="append", help="statements per bulk_write")
    args = parser.parse_args()
    batches = args.batch or [90]
    client: MongoClient[dict[str, object]] = MongoClient(args.url, serverSelectionTimeoutMS=5000)
    db = client[f"ferretdb_rates_{os.getpid()}"]
    try:
        coll = db["docs"]
        ids = [f"t{i:06d}" for i in range(args.docs)]
        coll.insert_many([{"_id": i, "status": "waiting", "n": 0} for i in ids])
        started = time.monotonic()
        for i in ids:
            coll.update_one({"_id": i}, {"$set": {"status": "queued"}, "$inc": {"n": 1}})
        print(f"update_one by _id: {args.docs / (time.monotonic() - started):.0f}/s")
        for batch in batches:
            started = time.monotonic()
            for at in range(0, len(ids), batch):
                ops = [
                    UpdateOne({"_id": i}, {"$set": {"status": "done"}, "$inc": {"n": 1}})
                    for i in ids[at : at + batch]
                ]
                coll.bulk_write(ops, ordered=False)
            rate = args.docs / (time.monotonic() - started)
            print(f"bulk_write of UpdateOne by _id, {batch} per call: {rate:.0f}/s")
    finally:
        client.drop_database(db.name)
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
