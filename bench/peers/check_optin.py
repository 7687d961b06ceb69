"""After a ``bench.sh`` run with the target "optin": were signups lost, and was an email really
rendered for each? (issue 3: rows in the database equal successful answers.)

    python3 bench/peers/check_optin.py .bench-state/tmp            # the newest run-* in there
    python3 bench/peers/check_optin.py --run .bench-state/tmp/run-20250101-120000 --db ...

It compares, for every round (the warm-up included, since it writes to the same database), the
addresses that load.py counted as successful (``r<round>-optin-<scenario>.emails``, and
``ops_ok`` in ``results.jsonl``/``warmup.jsonl``) with optin's SQLite database: profiles and
subscriptions to "bench", and the outbox, where ``sent_at`` is set only after the message was
rendered into its full MIME form by MAIL_BACKEND=discard. Standard library only. Exits 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sqlite3
import sys

SCENARIOS = ("signup", "confirm", "unsubscribe", "unsubscribe_link")
# The email each successful op must have caused, by scenario (None: none).
EMAIL_OF = {"signup": "confirm", "confirm": "welcome", "unsubscribe": "preferences_link"}


def read_emails(run: str, scenario: str) -> tuple[set[str], int]:
    """The addresses of successful ops of one scenario over all rounds, and their number."""
    found: set[str] = set()
    count = 0
    for path in sorted(glob.glob(os.path.join(run, f"r*-optin-{scenario}.emails"))):
        with open(path) as file:
            for line in file:
                if line.strip():
                    found.add(line.split("\t", 1)[0].strip())
                    count += 1
    return found, count


def read_runs(run: str) -> dict[str, dict[str, int]]:
    """ops_ok and errors of optin per scenario, summed over warmup.jsonl and results.jsonl."""
    totals: dict[str, dict[str, int]] = {}
    for name in ("warmup.jsonl", "results.jsonl"):
        path = os.path.join(run, name)
        if not os.path.exists(path):
            continue
        with open(path) as file:
            for line in file:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row["target"] != "optin":
                    continue
                total = totals.setdefault(row["scenario"], {"ok": 0, "errors": 0, "runs": 0})
                total["ok"] += row["ops_ok"]
                total["errors"] += row["errors"]
                total["runs"] += 1
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tmp", nargs="?", help="the harness's tmp folder ($PEERS_STATE/tmp)")
    parser.add_argument("--run", help="a run-* folder (default: the newest under TMP)")
    parser.add_argument("--db", help="optin's SQLite file (default: TMP/optin.sqlite3)")
    args = parser.parse_args()
    if not args.run:
        if not args.tmp:
            parser.error("give TMP or --run")
        runs = sorted(glob.glob(os.path.join(args.tmp, "run-*")))
        if not runs:
            parser.error(f"no run-* folder in {args.tmp}")
        args.run = runs[-1]
    db_path = args.db or os.path.join(args.tmp or os.path.dirname(args.run), "optin.sqlite3")
    totals = read_runs(args.run)
    if "signup" not in totals:
        print(f"check_optin: optin did not run in {args.run}; nothing to check")
        return 0

    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    one = lambda sql, *params: con.execute(sql, params).fetchone()[0]  # noqa: E731
    (resource_id,) = con.execute("SELECT id FROM resources WHERE slug = 'bench'").fetchone()
    profiles = {row[0] for row in con.execute("SELECT email FROM profiles")}
    subscribed = {
        row[0]
        for row in con.execute(
            "SELECT p.email FROM subscriptions s JOIN profiles p ON p.id = s.profile_id"
            " WHERE s.resource_id = ? AND s.channel = 'email'",
            (resource_id,),
        )
    }

    failures: list[str] = []

    def check(label: str, got: object, want: object) -> None:
        ok = got == want
        print(f"  {'ok  ' if ok else 'FAIL'} {label}: {got} (expected {want})")
        if not ok:
            failures.append(label)

    print(f"optin: lost signups and rendered emails ({args.run}, {db_path})")
    version = os.path.join(os.path.dirname(db_path), "optin-src", "VERSION")
    if os.path.exists(version):
        with open(version) as file:
            print(f"  code measured: {file.read().strip()} (git describe of the working tree)")
    signed, signed_count = read_emails(args.run, "signup")
    ok_signups = totals["signup"]["ok"]
    print(
        f"  signup ops: {ok_signups} answered 'Check your inbox', "
        f"{totals['signup']['errors']} failed, over {totals['signup']['runs']} runs"
    )
    check("successful signups listed by load.py", signed_count, ok_signups)
    check("profiles in the database", len(profiles), ok_signups)
    check("subscriptions to bench", len(subscribed), ok_signups)
    check("successful signups with no profile (lost)", len(signed - profiles), 0)
    check("profiles without a successful answer", len(profiles - signed), 0)

    for scenario in SCENARIOS:
        if scenario not in totals:
            continue
        addresses, count = read_emails(args.run, scenario)
        template = EMAIL_OF.get(scenario)
        if template:
            rendered = one(
                "SELECT COUNT(*) FROM outbox WHERE template = ? AND sent_at IS NOT NULL"
                " AND dropped_reason IS NULL AND last_error IS NULL",
                template,
            )
            to = {
                row[0]
                for row in con.execute(
                    "SELECT to_address FROM outbox WHERE template = ? AND sent_at IS NOT NULL"
                    " AND dropped_reason IS NULL",
                    (template,),
                )
            }
            check(f"{scenario}: '{template}' emails rendered and sent", rendered, count)
            check(f"{scenario}: successful ops with no rendered email", len(addresses - to), 0)
    if "confirm" in totals:
        _, confirmed = read_emails(args.run, "confirm")
        check("confirm: consent records", one("SELECT COUNT(*) FROM consent_records"), confirmed)
    if "unsubscribe_link" in totals:
        _, unsubscribed = read_emails(args.run, "unsubscribe_link")
        check(
            "unsubscribe_link: subscriptions now unsubscribed",
            one(
                "SELECT COUNT(*) FROM subscriptions WHERE resource_id = ? AND status = ?",
                resource_id,
                "unsubscribed",
            ),
            unsubscribed,
        )
    check(
        "outbox rows not delivered",
        one("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL OR dropped_reason IS NOT NULL"),
        0,
    )
    con.close()
    if failures:
        print(f"check_optin: {len(failures)} check(s) failed")
        return 1
    print("check_optin: no signup lost; every successful op's email was rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
