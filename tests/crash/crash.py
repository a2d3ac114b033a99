#!/usr/bin/env python3
"""Crash durability: drive clicks, postbacks and registrations from several
concurrent clients, SIGKILL the server at a random moment, restart it, and
check that every click whose 302 was received, every postback answered 200
and every registration answered 201 is in the database, and that
PRAGMA integrity_check is ok. Usage: crash.py BINARY [CYCLES]"""
import http.client, json, os, random, signal, sqlite3, subprocess, sys, tempfile, threading, time, urllib.parse
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
from apextrack_client import call, clickid, start as start_server

binary = os.path.abspath(sys.argv[1])
cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 20
work = tempfile.mkdtemp(prefix="apextrack-crash-")
db_path = os.path.join(work, "crash.db")
# Every sign-up comes from 127.0.0.1: lift the per-address limits, which
# tests/accounts.rs covers, so the crash test can register at full speed.
env = dict(os.environ, APEXTRACK_DATABASE_PATH=db_path, APEXTRACK_SERVER_BIND="127.0.0.1:0",
           APEXTRACK_SECURITY_REGISTRATIONS_PER_IP_HOUR="1000000",
           APEXTRACK_SECURITY_VERIFICATION_MAILS_PER_IP_HOUR="1000000",
           APEXTRACK_SECURITY_VERIFICATION_MAILS_PER_HOUR="1000000")
env.pop("APEXTRACK_CONFIG", None)


subprocess.run([binary, "user", "create", "--name", "Crash", "--email", "crash@example.com", "--password", "crash-password", "--verified"],
               cwd=work, env=env, check=True, capture_output=True)
proc, host, port = start_server(binary, work, env)
token = json.loads(call(host, port, "POST", "/api/login", {"email": "crash@example.com", "password": "crash-password", "device_name": "crash"})[2])["token"]
call(host, port, "POST", "/api/links", {"name": "Crash", "url": "https://offer.example/?c={clickid}", "slug": "crash"}, token)
secret = json.loads(call(host, port, "GET", "/api/user", token=token)[2])["postback_url"].split("secret=")[1]

acked = {"clicks": set(), "postbacks": set(), "registrations": set()}
lock = threading.Lock()
counter = iter(range(10**9))
known_clicks = []

def client(stop):
    while not stop.is_set():
        n = next(counter)
        op = random.choice(["click", "click", "click", "postback", "register"])
        try:
            if op == "click":
                status, location, _ = call(host, port, "GET", f"/go/crash?sub_id=s{n % 7}")
                if status == 302:
                    clickid = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["c"][0]
                    with lock:
                        acked["clicks"].add(clickid)
                        known_clicks.append(clickid)
            elif op == "postback" and known_clicks:
                with lock:
                    clickid = random.choice(known_clicks)
                txid = f"tx-{n}"
                status, _, _ = call(host, port, "GET", f"/api/postback/conversion?clickid={clickid}&txid={txid}&payout=1.5&secret={secret}")
                if status == 200:
                    with lock:
                        acked["postbacks"].add(txid)
            elif op == "register":
                email = f"user{n}@example.com"
                status, _, _ = call(host, port, "POST", "/api/register",
                                    {"name": "U", "email": email, "password": "password123", "password_confirmation": "password123"})
                if status == 201:
                    with lock:
                        acked["registrations"].add(email)
        except (OSError, http.client.HTTPException):
            pass  # the server was killed under this request: it was never acknowledged

def backup_under_load(cycle):
    """`apextrack backup` while the clients write: the copy must hold every
    row acknowledged before the backup began, and pass integrity_check."""
    with lock:
        before = {k: set(v) for k, v in acked.items()}
    copy = os.path.join(work, f"backup-{cycle}.db")
    subprocess.run([binary, "backup", copy], cwd=work, env=env, check=True, capture_output=True)
    db = sqlite3.connect(copy)
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    missing = before["clicks"] - {clickid(r[0], r[1]) for r in db.execute("SELECT id, secret FROM clicks")}
    missing |= before["postbacks"] - {r[0] for r in db.execute("SELECT txid FROM leads")}
    missing |= before["registrations"] - {r[0] for r in db.execute("SELECT email FROM users")}
    db.close()
    os.remove(copy)
    if check != "ok" or missing:
        print(f"backup in cycle {cycle}: integrity_check={check}, missing {sorted(missing)[:5]}")
        sys.exit(1)
    return sum(len(v) for v in before.values())

backed_up = 0
for cycle in range(1, cycles + 1):
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(stop,)) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(random.uniform(0.3, 1.5))
    backed_up += backup_under_load(cycle)
    time.sleep(random.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    db = sqlite3.connect(db_path)
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    clicks = {clickid(r[0], r[1]) for r in db.execute("SELECT id, secret FROM clicks")}
    leads = {r[0] for r in db.execute("SELECT txid FROM leads")}
    users = {r[0] for r in db.execute("SELECT email FROM users")}
    db.close()
    missing = {"clicks": acked["clicks"] - clicks, "postbacks": acked["postbacks"] - leads, "registrations": acked["registrations"] - users}
    if check != "ok" or any(missing.values()):
        print(f"cycle {cycle}: integrity_check={check}, missing={ {k: sorted(v)[:5] for k, v in missing.items()} }")
        sys.exit(1)
    proc, host, port = start_server(binary, work, env)

proc.send_signal(signal.SIGTERM)
proc.wait()
total = sum(len(v) for v in acked.values())
print(f"crash: {cycles} SIGKILL cycles; {len(acked['clicks'])} clicks, {len(acked['postbacks'])} postbacks and "
      f"{len(acked['registrations'])} registrations acknowledged, all {total} found; integrity_check ok; "
      f"{cycles} backups under load held all {backed_up} rows acknowledged before them")
