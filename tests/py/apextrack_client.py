"""What the Python test scripts (crash, Litestream) share: starting the real
server, one HTTP call, and a click's id as the server hands it out."""
import base64, http.client, json, subprocess, threading

def start(binary, work, env):
    """Starts `apextrack serve` on the port it picks; (process, host, port)."""
    proc = subprocess.Popen([binary, "serve"], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on http://" in line:
            host, port = line.split("listening on http://")[1].split()[0].rsplit(":", 1)
            # Keep reading its log so it never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, host, int(port)
    raise SystemExit("the server did not start")

def call(host, port, method, path, body=None, token=None, timeout=10):
    """One request on a connection of its own: (status, Location, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"Connection": "close", "User-Agent": "Mozilla/5.0 (iPhone; Mobile)"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, res.getheader("Location"), data

def clickid(row_id, secret):
    """A click's id as the server hands it out: 96 random bits, then the row id."""
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode() + str(row_id)
