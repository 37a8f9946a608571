"""Kill the labeling server with SIGKILL during a burst of submissions: nothing acknowledged is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from instructrl.label.db import LabelDB

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db, tasks, log):
    port = free_port()
    cmd = [sys.executable, "-m", "instructrl.cli", "label", "serve", "--db", str(db), "--port", str(port)]
    if tasks:
        cmd += ["--tasks", str(tasks)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(base + "/", timeout=2)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 401:  # up (and refusing a request without a token)
                return proc, base
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("server did not start within 60 s")


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def test_sigkill_during_submissions_loses_nothing_acknowledged(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"Q: {i}?\nA:", "responses": [f" r{i}.{j}" for j in range(4)]}) + "\n"
                             for i in range(400)))
    dbp = tmp_path / "label.db"
    db = LabelDB(dbp)
    tokens = {f"lab{i}": db.add_labeler(f"lab{i}") for i in range(4)}
    log = open(tmp_path / "server.log", "wb")
    proc, base = start_server(dbp, tasks, log)

    acked: list[tuple[str, int, list]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(name, token, seed):
        rng = random.Random(seed)
        for _ in range(300):  # bounded; the server dies long before
            if stop.is_set():
                return
            try:
                _, t = call(f"{base}/l/{token}/api/next", {})
                if t["task"] is None:
                    return
                ranking = list(range(4))
                rng.shuffle(ranking)
                status, r = call(f"{base}/l/{token}/api/submit", {"task": t["task"], "ranking": ranking})
            except (OSError, ValueError):  # connection refused / reset once the server is killed
                return
            if status == 200 and r.get("ok"):
                with lock:
                    acked.append((name, t["task"], ranking))

    threads = [threading.Thread(target=worker, args=(n, tok, i), daemon=True) for i, (n, tok) in enumerate(tokens.items())]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 60
    while len(acked) < 60 and time.monotonic() < deadline and any(th.is_alive() for th in threads):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-burst: requests are in flight
    proc.wait(timeout=10)
    stop.set()
    for th in threads:
        th.join(timeout=15)
    assert len(acked) >= 60, f"only {len(acked)} submissions acknowledged before the kill"

    # The database is intact and the server starts again on it.
    con = sqlite3.connect(dbp)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    proc2, base2 = start_server(dbp, None, log)
    try:
        stored = {(s["labeler"], s["task"]): s["ranking"] for s in LabelDB(dbp).submissions()}
        for name, task, ranking in acked:
            assert stored.get((name, task)) == ranking, (name, task)
            # ... and each labeler sees their own acknowledged answer through the restarted server.
        for name, task, ranking in acked[:: max(1, len(acked) // 10)]:
            _, view = call(f"{base2}/l/{tokens[name]}/api/task/{task}")
            assert view["answer"]["ranking"] == ranking
        # Labelers resume: the next task of each is one they have not answered.
        for name, token in tokens.items():
            _, t = call(f"{base2}/l/{token}/api/next", {})
            assert (name, t["task"]) not in stored
    finally:
        proc2.terminate()
        try:
            proc2.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc2.kill()
        log.close()
