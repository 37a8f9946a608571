"""The labeling store: one SQLite file holding tasks, labelers, assignments and submissions.

Durability: the file is in WAL mode with ``synchronous=FULL``, and every write is one transaction
that is committed (and so fsynced) before the web app acknowledges it. Killing the server at any
moment loses at most a submission that was never acknowledged.

Tables (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

- ``tasks(id, prompt, responses JSON, key UNIQUE, messages JSON, source, line, added)``: one prompt and its K
  responses; ``key`` (a hash of prompt + responses) makes loading the same file twice a no-op.
- ``labelers(id, name UNIQUE, token_hash UNIQUE, created)``: only a SHA-256 of each personal token
  is stored; the token itself is shown once by ``instructrl label add-labeler``.
- ``assignments(task_id, labeler_id, status, assigned, finished)``: a task handed to a labeler;
  ``status`` is ``open`` (shown, not answered yet), ``done`` or ``skipped``.
- ``submissions(task_id, labeler_id, ranking JSON, flags JSON, created, updated)``: one answer per
  task and labeler (a labeler may revise their own answer; nobody else's).
- ``meta(key, value)``: settings such as ``overlap``.

Assignment: a labeler who has an open task gets it again (they resume where they left off);
otherwise they get the first task (in file order) that they have not seen and that fewer than
``overlap`` labelers have answered or are answering (an open assignment older than ``lease_s``
no longer holds a place for others). So with ``overlap`` = 2 every task is ranked by two different
people, which is what inter-labeler agreement is measured on.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from instructrl.data.readers import parse_ranking, read_records
from instructrl.errors import DataError, InstructRLError

SCHEMA_VERSION = 2  # 2: tasks.messages (chat-form tasks); a version-1 file is upgraded in place
#: The paper's per-output metadata a labeler can flag ([IG] App. B): keys -> labels shown.
FLAGS = {
    "harmful": "harmful",
    "untruthful": "untruthful / made up",
    "ignores_instruction": "doesn't follow the instruction",
}
DEFAULT_LEASE_S = 2 * 3600.0
NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
MAX_TASK_ID = 2**63 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    prompt TEXT NOT NULL,
    responses TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    messages TEXT,
    source TEXT,
    line INTEGER,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labelers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    labeler_id INTEGER NOT NULL REFERENCES labelers(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'done', 'skipped')),
    assigned REAL NOT NULL,
    finished REAL,
    PRIMARY KEY (task_id, labeler_id)
);
CREATE INDEX IF NOT EXISTS assignments_by_labeler ON assignments(labeler_id, status);
CREATE TABLE IF NOT EXISTS submissions (
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    labeler_id INTEGER NOT NULL REFERENCES labelers(id),
    ranking TEXT NOT NULL,
    flags TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (task_id, labeler_id)
);
"""


class LabelError(InstructRLError):
    """A labeling request that cannot be honoured (bad input, a task that is not yours...)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Labeler:
    id: int
    name: str


@dataclass
class Task:
    id: int
    prompt: str  # for a chat task: its conversation rendered as plain "Role: content" lines
    responses: list[str]
    messages: list | None = None  # the conversation before the responses, for chat-form tasks

    @property
    def k(self) -> int:
        return len(self.responses)


#: The columns `_task` reads, in its order (tasks aliased ``t``); every query that builds a Task selects them.
TASK_COLUMNS = "t.id, t.prompt, t.responses, t.messages"


def _task(row) -> Task:
    """A Task from a row that starts with :data:`TASK_COLUMNS` (messages JSON or NULL)."""
    return Task(row[0], row[1], json.loads(row[2]), json.loads(row[3]) if row[3] is not None else None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _task_key(prompt: str, responses: list[str], messages: list | None = None) -> str:
    head = prompt if messages is None else {"messages": messages}  # plain tasks keep their version-1 keys
    return hashlib.sha256(json.dumps([head, responses], ensure_ascii=False).encode("utf-8")).hexdigest()


def parse_task(obj, path=None, line: int | None = None) -> tuple[str, list[str], list | None]:
    """Validate one tasks-file record ``{"prompt", "responses": [...]}`` or, in chat form,
    ``{"messages": [...], "responses": [...]}`` (a ``ranking`` is ignored); returns (prompt,
    responses, messages), the prompt of a chat task being its plain rendering.

    Uses the rankings reader's checks, so a task that can be labeled can also be exported and read
    by ``instructrl rm``: a non-empty prompt, 2 or more distinct non-empty responses.
    """
    if not isinstance(obj, dict):
        raise DataError(path, line, None, "expected a JSON object {\"prompt\", \"responses\"}")
    if "responses" not in obj:
        raise DataError(path, line, "responses", "missing field (a task is {\"prompt\", \"responses\": [...]}, "
                                                 "as `instructrl compare --labelers none` writes)")
    responses = obj["responses"]
    k = len(responses) if isinstance(responses, list) else 0
    rec = {key: obj[key] for key in ("prompt", "messages", "responses") if key in obj}
    rec["ranking"] = list(range(k))
    r = parse_ranking(rec, path, line)
    return r.prompt, r.responses, r.messages


def validate_ranking(value, k: int) -> list:
    """A submitted ranking: a list of response indices best..worst, an element may be a list of tied
    indices; it must be a permutation of ``range(k)`` and must prefer something. Returns it as the
    rankings file writes it (ints, and lists of 2+ ints for ties)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise LabelError("ranking: not valid JSON") from None
    try:
        parse_ranking({"prompt": "p", "responses": [str(i) for i in range(k)], "ranking": value})
    except DataError as e:
        raise LabelError(f"{e.field or 'ranking'}: {e.message}") from None
    out = []
    for el in value:
        if isinstance(el, list):
            out.append(list(el) if len(el) > 1 else el[0])
        else:
            out.append(el)
    return out


def validate_flags(value, k: int) -> list[list[str]]:
    """Flags per response: a list of K lists of flag names from :data:`FLAGS` (or a dict
    ``{index: [names]}``). Returns the K-list form, each list sorted and without repeats."""
    if value is None:
        return [[] for _ in range(k)]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise LabelError("flags: not valid JSON") from None
    if isinstance(value, dict):
        out = [[] for _ in range(k)]
        for key, names in value.items():
            try:
                i = int(key)
            except (TypeError, ValueError):
                raise LabelError(f"flags: {key!r} is not a response index") from None
            if not 0 <= i < k:
                raise LabelError(f"flags: index {i} is out of range for {k} responses")
            out[i] = names
        value = out
    if not isinstance(value, list) or len(value) != k:
        raise LabelError(f"flags: expected a list of {k} lists of flag names")
    clean = []
    for i, names in enumerate(value):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise LabelError(f"flags[{i}]: expected a list of flag names")
        bad = [n for n in names if n not in FLAGS]
        if bad:
            raise LabelError(f"flags[{i}]: unknown flag {bad[0]!r} (known: {', '.join(FLAGS)})")
        clean.append(sorted(set(names)))
    return clean


def ranks_of(ranking: list) -> dict[int, int]:
    """{response index: place} for a ranking with tie groups (tied responses share a place)."""
    out = {}
    for place, el in enumerate(ranking):
        for i in el if isinstance(el, list) else [el]:
            out[i] = place
    return out


def pair_agreement(ranking_a: list, ranking_b: list) -> tuple[int, int]:
    """(agreeing pairs, pairs) of two labelers' rankings of the same K responses.

    For every pair of responses (i < j) each labeler either prefers i, prefers j or ties them; they
    agree when they say the same. Without ties this is the paper's inter-labeler agreement
    ([IG] §3.4: 72.6 ± 1.5% between training labelers).
    """
    ra, rb = ranks_of(ranking_a), ranks_of(ranking_b)
    same = total = 0
    for i, j in itertools.combinations(sorted(ra), 2):
        sa = (ra[i] > ra[j]) - (ra[i] < ra[j])
        sb = (rb[i] > rb[j]) - (rb[i] < rb[j])
        total += 1
        same += sa == sb
    return same, total


class LabelDB:
    """The labeling database at ``path`` (created on first use unless ``create=False``)."""

    def __init__(self, path, create: bool = True, lease_s: float = DEFAULT_LEASE_S):
        self.path = Path(path)
        self.lease_s = lease_s
        if self.path.is_dir():
            raise InstructRLError(f"{self.path} is a folder; --db names a SQLite file")
        if not self.path.exists():
            if not create:
                raise InstructRLError(f"no labeling database at {self.path} (create one with "
                                      "`instructrl label add-labeler NAME --db FILE`)")
            if self.path.parent and not self.path.parent.exists():
                raise InstructRLError(f"folder {self.path.parent} does not exist")
            # Created private (0600): it holds every answer and the labelers' token hashes. SQLite
            # gives its -wal and -shm files the same permissions.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._make_private()
        try:
            with self.connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise InstructRLError(f"{self.path} was written by a newer instructrl (schema {version})")
                if version < SCHEMA_VERSION:
                    if version == 0 and con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                        raise InstructRLError(f"{self.path} is a SQLite file of something else, not a labeling database")
                    con.execute("BEGIN IMMEDIATE")
                    if version == 0:
                        for stmt in _SCHEMA.split(";"):  # (executescript would commit the BEGIN)
                            if stmt.strip():
                                con.execute(stmt)
                    # 1 -> 2: tasks.messages (NULL for plain tasks, which keep their keys). Checked under
                    # the lock: another process may have upgraded the file since the version was read.
                    elif "messages" not in {r[1] for r in con.execute("PRAGMA table_info(tasks)")}:
                        con.execute("ALTER TABLE tasks ADD COLUMN messages TEXT")
                    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    con.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise InstructRLError(f"{self.path} is not a labeling database: {e}") from None

    def _make_private(self) -> None:
        """chmod 0600 the database (and its WAL files) when they are readable by others."""
        for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                if p.exists() and p.stat().st_mode & 0o077 and p.stat().st_uid == os.getuid():
                    os.chmod(p, 0o600)
            except OSError:
                pass

    # -- connections ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self):
        """A fresh connection (one per request / thread), closed on exit. Autocommit mode: write
        methods open their own ``BEGIN IMMEDIATE`` transaction."""
        con = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=30000")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self):
        """A write transaction, committed (and fsynced: WAL + synchronous=FULL) on a clean exit."""
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- settings ------------------------------------------------------------------------------

    def get_meta(self, key: str, default=None):
        with self.connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, json.dumps(value)))

    @property
    def overlap(self) -> int:
        return int(self.get_meta("overlap", 1))

    def set_overlap(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise InstructRLError(f"--overlap must be a whole number >= 1, got {n!r}")
        self.set_meta("overlap", n)

    # -- tasks and labelers --------------------------------------------------------------------

    def add_tasks_file(self, path) -> dict:
        """Load a tasks file (JSONL ``{"prompt", "responses"}``); tasks already in the database are
        skipped. The whole file is validated before anything is written."""
        rows = read_records(path, lambda obj, p, n: (parse_task(obj, p, n), n))
        now = time.time()
        added = 0
        with self.transaction() as con:
            for (prompt, responses, messages), line in rows:
                cur = con.execute(
                    "INSERT OR IGNORE INTO tasks(prompt, responses, key, messages, source, line, added) "
                    "VALUES(?,?,?,?,?,?,?)",
                    (prompt, json.dumps(responses, ensure_ascii=False), _task_key(prompt, responses, messages),
                     None if messages is None else json.dumps(messages, ensure_ascii=False),
                     os.path.abspath(str(path)), line, now))
                added += cur.rowcount
        return {"read": len(rows), "added": added, "already_present": len(rows) - added, "tasks": self.n_tasks()}

    def n_tasks(self) -> int:
        with self.connect() as con:
            return con.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]

    def task(self, task_id: int) -> Task | None:
        with self.connect() as con:
            row = con.execute(f"SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id=?", (task_id,)).fetchone()
        return _task(row) if row else None

    def add_labeler(self, name: str, new_token: bool = False) -> str:
        """Create labeler ``name`` and return their personal token (only its hash is stored).
        ``new_token=True`` replaces the token of an existing labeler (a lost or leaked link)."""
        if not NAME_RE.match(name or ""):
            raise InstructRLError(f"labeler name {name!r}: use 1-64 letters, digits or . _ - + @")
        token = secrets.token_urlsafe(24)
        with self.transaction() as con:
            row = con.execute("SELECT id FROM labelers WHERE name=?", (name,)).fetchone()
            if row and not new_token:
                raise InstructRLError(f"labeler {name!r} already exists (use --new-token to replace their link)")
            if row:
                con.execute("UPDATE labelers SET token_hash=? WHERE id=?", (hash_token(token), row[0]))
            else:
                con.execute("INSERT INTO labelers(name, token_hash, created) VALUES(?,?,?)",
                            (name, hash_token(token), time.time()))
        return token

    def labeler_by_token(self, token: str | None) -> Labeler | None:
        if not token or len(token) > 200:
            return None
        with self.connect() as con:
            row = con.execute("SELECT id, name FROM labelers WHERE token_hash=?", (hash_token(token),)).fetchone()
        return Labeler(row[0], row[1]) if row else None

    def labelers(self) -> list[Labeler]:
        with self.connect() as con:
            return [Labeler(i, n) for i, n in con.execute("SELECT id, name FROM labelers ORDER BY id")]

    # -- assignment and answers ----------------------------------------------------------------

    def open_task(self, labeler: Labeler) -> Task | None:
        """The labeler's open (assigned, unanswered) task, or None; changes nothing."""
        with self.connect() as con:
            row = con.execute(f"SELECT {TASK_COLUMNS} FROM assignments a JOIN tasks t ON t.id=a.task_id "
                              "WHERE a.labeler_id=? AND a.status='open' ORDER BY a.assigned, a.task_id LIMIT 1",
                              (labeler.id,)).fetchone()
        return _task(row) if row else None

    def next_task(self, labeler: Labeler) -> Task | None:
        """The labeler's open task, or a new one assigned to them (None when nothing is left)."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute("SELECT task_id FROM assignments WHERE labeler_id=? AND status='open' "
                              "ORDER BY assigned, task_id LIMIT 1", (labeler.id,)).fetchone()
            if row is None:
                overlap = json.loads((con.execute("SELECT value FROM meta WHERE key='overlap'").fetchone()
                                      or ["1"])[0])
                row = con.execute(
                    """
                    SELECT t.id FROM tasks t
                    WHERE NOT EXISTS (SELECT 1 FROM assignments a WHERE a.task_id=t.id AND a.labeler_id=?)
                      AND (SELECT COUNT(*) FROM assignments a WHERE a.task_id=t.id
                           AND (a.status='done' OR (a.status='open' AND a.assigned > ?))) < ?
                    ORDER BY t.id LIMIT 1
                    """, (labeler.id, now - self.lease_s, overlap)).fetchone()
                if row is None:
                    return None
                con.execute("INSERT INTO assignments(task_id, labeler_id, status, assigned) VALUES(?,?,'open',?)",
                            (row[0], labeler.id, now))
            t = con.execute(f"SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id=?", (row[0],)).fetchone()
        return _task(t)

    def _own_task(self, con, labeler: Labeler, task_id) -> tuple[Task, str]:
        if not isinstance(task_id, int) or isinstance(task_id, bool):
            raise LabelError("task: expected a task id (a whole number)")
        if not 0 < task_id <= MAX_TASK_ID:  # SQLite integers are 64-bit: a larger id is no task of anyone's
            raise LabelError(f"task {task_id} is not assigned to you", status=403)
        row = con.execute(
            f"SELECT {TASK_COLUMNS}, a.status FROM assignments a JOIN tasks t ON t.id=a.task_id "
            "WHERE a.task_id=? AND a.labeler_id=?", (task_id, labeler.id)).fetchone()
        if row is None:
            # Same answer whether the task exists or not: nothing about others' work leaks.
            raise LabelError(f"task {task_id} is not assigned to you", status=403)
        return _task(row), row[4]

    def submit(self, labeler: Labeler, task_id, ranking, flags=None) -> dict:
        """Store (or revise) the labeler's answer to a task assigned to them; committed on return."""
        now = time.time()
        with self.transaction() as con:
            task, status = self._own_task(con, labeler, task_id)
            if status == "skipped":  # given back: it may be someone else's now
                raise LabelError(f"task {task_id} was skipped; it is no longer yours to answer", status=409)
            ranking = validate_ranking(ranking, task.k)
            flags = validate_flags(flags, task.k)
            con.execute(
                "INSERT INTO submissions(task_id, labeler_id, ranking, flags, created, updated) VALUES(?,?,?,?,?,?) "
                "ON CONFLICT(task_id, labeler_id) DO UPDATE SET ranking=excluded.ranking, flags=excluded.flags, "
                "updated=excluded.updated", (task.id, labeler.id, json.dumps(ranking), json.dumps(flags), now, now))
            con.execute("UPDATE assignments SET status='done', finished=? WHERE task_id=? AND labeler_id=?",
                        (now, task.id, labeler.id))
        return {"task": task.id, "ranking": ranking, "flags": flags, "revised": status == "done"}

    def skip(self, labeler: Labeler, task_id) -> None:
        """Give an open task back (it goes to someone else); an answered task cannot be skipped."""
        with self.transaction() as con:
            _, status = self._own_task(con, labeler, task_id)
            if status == "done":
                raise LabelError(f"task {task_id} is already answered", status=409)
            con.execute("UPDATE assignments SET status='skipped', finished=? WHERE task_id=? AND labeler_id=?",
                        (time.time(), task_id, labeler.id))

    def own_view(self, labeler: Labeler, task_id: int) -> tuple[Task, dict | None]:
        """A task assigned to ``labeler`` with their own answer (None if unanswered)."""
        with self.connect() as con:
            task, _ = self._own_task(con, labeler, task_id)
            row = con.execute("SELECT ranking, flags FROM submissions WHERE task_id=? AND labeler_id=?",
                              (task_id, labeler.id)).fetchone()
        return task, ({"ranking": json.loads(row[0]), "flags": json.loads(row[1])} if row else None)

    def last_answered(self, labeler: Labeler) -> int | None:
        with self.connect() as con:
            row = con.execute("SELECT task_id FROM submissions WHERE labeler_id=? ORDER BY updated DESC LIMIT 1",
                              (labeler.id,)).fetchone()
        return row[0] if row else None

    def progress(self, labeler: Labeler) -> dict:
        """{"done", "skipped", "available"}: answered, skipped, and tasks still open to this labeler."""
        now = time.time()
        with self.connect() as con:
            counts = dict(con.execute("SELECT status, COUNT(*) FROM assignments WHERE labeler_id=? GROUP BY status",
                                      (labeler.id,)).fetchall())
            overlap = self.overlap
            available = con.execute(
                """
                SELECT COUNT(*) FROM tasks t
                WHERE NOT EXISTS (SELECT 1 FROM assignments a WHERE a.task_id=t.id AND a.labeler_id=?)
                  AND (SELECT COUNT(*) FROM assignments a WHERE a.task_id=t.id
                       AND (a.status='done' OR (a.status='open' AND a.assigned > ?))) < ?
                """, (labeler.id, now - self.lease_s, overlap)).fetchone()[0]
        return {"done": counts.get("done", 0), "skipped": counts.get("skipped", 0),
                "open": counts.get("open", 0), "available": available}

    # -- export and statistics -----------------------------------------------------------------

    def submissions(self) -> list[dict]:
        """Every answer, by task then labeler: the rankings-file records ``instructrl rm`` reads, with
        the labeler's name in ``labeler``, the task id in ``task`` and flags per response in ``flags``."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT t.id, t.prompt, t.responses, t.messages, l.name, s.ranking, s.flags, s.updated FROM submissions s "
                "JOIN tasks t ON t.id=s.task_id JOIN labelers l ON l.id=s.labeler_id ORDER BY t.id, l.name").fetchall()
        # A chat task is exported in chat form ({"messages", "responses", "ranking"}), as it came in.
        return [{**({"prompt": p} if msg is None else {"messages": json.loads(msg)}), "responses": json.loads(r),
                 "ranking": json.loads(rk), "labeler": name, "flags": json.loads(fl), "task": tid, "time": round(upd, 3)}
                for tid, p, r, msg, name, rk, fl, upd in rows]

    def export(self, out) -> int:
        """Write :meth:`submissions` as JSONL to ``out`` (through a temp file and a rename)."""
        out = Path(out)
        if out.is_dir():
            raise InstructRLError(f"--out {out} is a folder; export writes one JSONL file")
        if out.resolve() == self.path.resolve():
            raise InstructRLError("--out is the database itself; choose another file")
        if not out.parent.is_dir():
            raise InstructRLError(f"--out {out}: folder {out.parent} does not exist")
        recs = self.submissions()
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for r in recs:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except OSError as e:  # a full disk: nothing but the old export is left
            tmp.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InstructRLError(f"no space left on device: {out}") from None
            raise
        return len(recs)

    def stats(self) -> dict:
        """Progress per labeler and pairwise inter-labeler agreement on tasks ranked by 2+ labelers."""
        overlap = self.overlap
        with self.connect() as con:
            n_tasks = con.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            per_task = dict(con.execute("SELECT task_id, COUNT(*) FROM submissions GROUP BY task_id").fetchall())
            names = dict(con.execute("SELECT id, name FROM labelers").fetchall())
            status = {}
            for lid, st, n in con.execute("SELECT labeler_id, status, COUNT(*) FROM assignments GROUP BY labeler_id, status"):
                status.setdefault(lid, {})[st] = n
            flagged = {}
            answers: dict[int, list[tuple[int, list]]] = {}
            for tid, lid, rk, fl in con.execute("SELECT task_id, labeler_id, ranking, flags FROM submissions"):
                answers.setdefault(tid, []).append((lid, json.loads(rk)))
                flagged[lid] = flagged.get(lid, 0) + sum(bool(f) for f in json.loads(fl))
        pair_counts: dict[tuple[int, int], list[int]] = {}
        for tid, subs in answers.items():
            subs.sort()
            for (la, ra), (lb, rb) in itertools.combinations(subs, 2):
                s, t = pair_agreement(ra, rb)
                c = pair_counts.setdefault((la, lb), [0, 0, 0])
                c[0] += s
                c[1] += t
                c[2] += 1
        labelers = []
        for lid, name in sorted(names.items(), key=lambda x: x[1]):
            st = status.get(lid, {})
            same = sum(c[0] for k, c in pair_counts.items() if lid in k)
            tot = sum(c[1] for k, c in pair_counts.items() if lid in k)
            labelers.append({"labeler": name, "done": st.get("done", 0), "open": st.get("open", 0),
                             "skipped": st.get("skipped", 0), "flagged_responses": flagged.get(lid, 0),
                             "agreement": same / tot if tot else None, "agreement_pairs": tot})
        pairs = [{"labelers": [names[a], names[b]], "tasks": c[2], "pairs": c[1],
                  "agreement": c[0] / c[1] if c[1] else None}
                 for (a, b), c in sorted(pair_counts.items(), key=lambda x: (names[x[0][0]], names[x[0][1]]))]
        same = sum(c[0] for c in pair_counts.values())
        tot = sum(c[1] for c in pair_counts.values())
        return {
            "tasks": n_tasks,
            "overlap": overlap,
            "tasks_answered": len(per_task),
            "tasks_complete": sum(n >= overlap for n in per_task.values()),
            "submissions": sum(per_task.values()),
            "overlapping_tasks": sum(n >= 2 for n in per_task.values()),
            "agreement": same / tot if tot else None,
            "agreement_pairs": tot,
            "labelers": labelers,
            "labeler_pairs": pairs,
        }


def format_stats(s: dict) -> str:
    """The human-readable form of :meth:`LabelDB.stats`."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines = [f"tasks: {s['tasks']}  overlap: {s['overlap']}  answered: {s['tasks_answered']}  "
             f"complete: {s['tasks_complete']}  submissions: {s['submissions']}"]
    if s["labelers"]:
        w = max(8, *(len(r["labeler"]) for r in s["labelers"]))
        lines.append(f"{'labeler':<{w}}  {'done':>5}  {'open':>4}  {'skipped':>7}  {'flagged':>7}  {'agreement':>9}")
        for r in s["labelers"]:
            lines.append(f"{r['labeler']:<{w}}  {r['done']:>5}  {r['open']:>4}  {r['skipped']:>7}  "
                         f"{r['flagged_responses']:>7}  {pct(r['agreement']):>9}")
    else:
        lines.append("no labelers yet (instructrl label add-labeler NAME --db FILE)")
    if s["agreement_pairs"]:
        lines.append(f"inter-labeler agreement: {pct(s['agreement'])} over {s['agreement_pairs']} response pairs on "
                     f"{s['overlapping_tasks']} tasks ranked by 2+ labelers (paper: 72.6%)")
        for p in s["labeler_pairs"]:
            lines.append(f"  {p['labelers'][0]} vs {p['labelers'][1]}: {pct(p['agreement'])} "
                         f"({p['pairs']} pairs, {p['tasks']} tasks)")
    else:
        lines.append("inter-labeler agreement: no task ranked by 2+ labelers yet (serve with --overlap 2)")
    return "\n".join(lines)


__all__ = ["LabelDB", "LabelError", "Labeler", "Task", "FLAGS", "parse_task", "validate_ranking",
           "validate_flags", "pair_agreement", "ranks_of", "format_stats", "hash_token"]
