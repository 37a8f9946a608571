"""Labeling app: submit, resume, overlap, export -> `instructrl rm`'s reader, agreement, security."""

from __future__ import annotations

import json
import re

import pytest

from instructrl.cli import main
from instructrl.data.readers import read_rankings
from instructrl.errors import DataError, InstructRLError
from instructrl.label.app import create_app, display_order, letters
from instructrl.label.db import LabelDB, pair_agreement, validate_ranking

SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def write_tasks(path, n=4, k=3, extra=None):
    rows = [{"prompt": f"Q: question {i}?\nA:", "responses": [f" answer {i}.{j}" for j in range(k)]} for i in range(n)]
    if extra:
        rows += extra
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.fixture
def setup(tmp_path):
    """A database with 4 tasks (K=3), labelers alice and bob, and a test client."""
    rows = write_tasks(tmp_path / "tasks.jsonl")
    db = LabelDB(tmp_path / "label.db")
    db.add_tasks_file(tmp_path / "tasks.jsonl")
    tokens = {name: db.add_labeler(name) for name in ("alice", "bob")}
    app = create_app(db)
    return db, tokens, app.test_client(), rows


def next_task(client, token):
    r = client.post(f"/l/{token}/api/next")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_submit_form_and_api_then_export_reads_back(setup, tmp_path):
    db, tok, client, rows = setup
    # The page: a "next task" button (a GET assigns nothing), then a task, its responses as cards.
    html = client.get(f"/l/{tok['alice']}").get_data(as_text=True)
    assert 'id="next-form"' in html and "data-task" not in html
    assert db.progress(db.labeler_by_token(tok["alice"]))["open"] == 0
    r = client.post(f"/l/{tok['alice']}/next")
    assert r.status_code == 303
    html = client.get(f"/l/{tok['alice']}").get_data(as_text=True)
    assert 'data-task="1"' in html and "answer 0.2" in html
    # Form submission (as the page posts it): ranking JSON with a tie, flags per response.
    r = client.post(f"/l/{tok['alice']}/submit",
                    data={"task": "1", "ranking": "[2, [0, 1]]", "flag_1": ["untruthful", "harmful"]})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/l/{tok['alice']}")
    # JSON API submission, task 2.
    t = next_task(client, tok["alice"])
    assert t["task"] == 2 and t["responses"] == rows[1]["responses"]
    r = client.post(f"/l/{tok['alice']}/api/submit", json={"task": 2, "ranking": [1, 0, 2]})
    assert r.status_code == 200 and r.json["ok"]
    t = next_task(client, tok["bob"])
    client.post(f"/l/{tok['bob']}/api/submit", json={"task": t["task"], "ranking": [0, 2, 1], "flags": {"2": ["ignores_instruction"]}})

    out = tmp_path / "rankings.jsonl"
    assert main(["label", "export", "--db", str(db.path), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["task"], x["labeler"], x["ranking"]) for x in lines] == [
        (1, "alice", [2, [0, 1]]), (2, "alice", [1, 0, 2]), (3, "bob", [0, 2, 1])]
    assert lines[0]["flags"] == [[], ["harmful", "untruthful"], []]
    assert lines[2]["flags"] == [[], [], ["ignores_instruction"]]
    # The reader `instructrl rm` uses accepts the file (extra fields included) as it is.
    recs = read_rankings(out)
    assert [r.labeler for r in recs] == ["alice", "alice", "bob"]
    assert recs[0].prompt == rows[0]["prompt"] and recs[0].responses == rows[0]["responses"]
    assert recs[0].ranks() == [1, 1, 0] and recs[0].comparisons() == [(2, 0), (2, 1)]
    assert recs[1].ranking == [1, 0, 2] and recs[1].ties is None
    assert main(["data", "check", str(out)]) == 0


def test_export_trains_a_reward_model(setup, tmp_path):
    """The export is a training file for `instructrl rm` as it stands."""
    import torch

    from instructrl import rm
    from instructrl.config import RMConfig

    from tiny_hf import char_gpt2_folder

    db, tok, client, _ = setup
    for name in ("alice", "bob"):
        while (t := next_task(client, tok[name]))["task"] is not None:
            client.post(f"/l/{tok[name]}/api/submit", json={"task": t["task"], "ranking": [0, [1, 2]]})
    out = tmp_path / "rankings.jsonl"
    assert db.export(out) == 4
    char_gpt2_folder(tmp_path / "base", n_positions=64)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = rm.train_reward_model(RMConfig(batch_size=2, max_len=48, val_fraction=0.25), str(tmp_path / "base"), str(out),
                   str(tmp_path / "rm"), verbose=False)
    finally:
        torch.set_num_threads(n)
    assert (tmp_path / "rm" / "config.json").is_file() and m["steps"] >= 1


def test_resume_where_left_off(setup):
    db, tok, client, _ = setup
    a = tok["alice"]
    assert next_task(client, a)["task"] == 1
    client.post(f"/l/{a}/api/submit", json={"task": 1, "ranking": [0, 1, 2]})
    assert next_task(client, a)["task"] == 2  # assigned, not answered
    # Reopening the link (a new browser, or after a server restart) shows the same open task.
    fresh = create_app(LabelDB(db.path)).test_client()
    assert next_task(fresh, a)["task"] == 2
    html = fresh.get(f"/l/{a}").get_data(as_text=True)
    assert 'data-task="2"' in html and "1 ranked" in html
    # ... and the previous answer can be revised (only by its author).
    assert f"/l/{a}/task/1" in html
    view = fresh.get(f"/l/{a}/api/task/1").json
    assert view["answer"]["ranking"] == [0, 1, 2]
    r = fresh.post(f"/l/{a}/api/submit", json={"task": 1, "ranking": [2, 1, 0]})
    assert r.json["revised"] is True
    assert [s["ranking"] for s in db.submissions()] == [[2, 1, 0]]
    assert next_task(fresh, a)["task"] == 2  # revising did not move the queue
    # Skipping gives the task back: the next is task 3, and bob can get task 2.
    assert fresh.post(f"/l/{a}/skip", data={"task": "2"}).status_code == 303
    assert next_task(fresh, a)["task"] == 3
    assert db.progress(db.labeler_by_token(a)) == {"done": 1, "skipped": 1, "open": 1, "available": 1}


def overlap_db(tmp_path, n_tasks: int, names):
    """A database with `n_tasks` tasks at overlap 2, the labelers `names`, and a test client."""
    write_tasks(tmp_path / "tasks.jsonl", n=n_tasks)
    db = LabelDB(tmp_path / "label.db")
    db.add_tasks_file(tmp_path / "tasks.jsonl")
    db.set_overlap(2)
    return db, {name: db.add_labeler(name) for name in names}, create_app(db).test_client()


def test_overlap_assignment(tmp_path):
    db, tok, client = overlap_db(tmp_path, 3, ("a", "b", "c"))
    # Each task goes to two different people before the next task is opened.
    assert next_task(client, tok["a"])["task"] == 1
    assert next_task(client, tok["b"])["task"] == 1
    assert next_task(client, tok["c"])["task"] == 2
    # Work until nobody has anything left, in an interleaved order.
    done = {name: [] for name in tok}
    for _ in range(20):
        progressed = False
        for name in ("c", "a", "b"):
            t = next_task(client, tok[name])
            if t["task"] is None:
                continue
            client.post(f"/l/{tok[name]}/api/submit", json={"task": t["task"], "ranking": [0, 1, 2]})
            done[name].append(t["task"])
            progressed = True
        if not progressed:
            break
    per_task = {}
    for name, tasks in done.items():
        assert len(tasks) == len(set(tasks))  # nobody ranks a task twice
        for t in tasks:
            per_task.setdefault(t, []).append(name)
    assert {t: len(v) for t, v in per_task.items()} == {1: 2, 2: 2, 3: 2}
    s = db.stats()
    assert s["tasks_complete"] == 3 and s["submissions"] == 6 and s["overlapping_tasks"] == 3
    assert s["agreement"] == 1.0


def test_agreement_hand_made_case(tmp_path):
    assert pair_agreement([0, 1, 2], [0, 2, 1]) == (2, 3)
    assert pair_agreement([0, 1, 2, 3], [3, 2, 1, 0]) == (0, 6)
    assert pair_agreement([[0, 1], 2], [0, 1, 2]) == (2, 3)  # a tie vs a preference disagrees
    assert pair_agreement([[0, 1], 2], [[1, 0], 2]) == (3, 3)

    write_tasks(tmp_path / "tasks.jsonl", n=2, k=3)
    db = LabelDB(tmp_path / "label.db")
    db.add_tasks_file(tmp_path / "tasks.jsonl")
    db.set_overlap(3)
    labs = {n: db.labeler_by_token(db.add_labeler(n)) for n in ("ann", "ben", "cat")}
    answers = {  # task -> labeler -> ranking
        1: {"ann": [0, 1, 2], "ben": [0, 2, 1], "cat": [2, 1, 0]},
        2: {"ann": [1, 0, 2], "ben": [1, 0, 2]},
    }
    for task in (1, 2):
        for name, ranking in answers[task].items():
            assert db.next_task(labs[name]).id == task
            db.submit(labs[name], task, ranking)
    s = db.stats()
    # Pairs of responses per labeler pair: task 1: ann-ben 2/3, ann-cat 0/3, ben-cat 1/3; task 2: ann-ben 3/3.
    pairs = {tuple(p["labelers"]): (p["agreement"], p["pairs"], p["tasks"]) for p in s["labeler_pairs"]}
    assert pairs == {("ann", "ben"): (5 / 6, 6, 2), ("ann", "cat"): (0.0, 3, 1), ("ben", "cat"): (1 / 3, 3, 1)}
    assert s["agreement"] == pytest.approx(6 / 12) and s["agreement_pairs"] == 12
    per = {r["labeler"]: r for r in s["labelers"]}
    assert per["ann"]["agreement"] == pytest.approx(5 / 9) and per["cat"]["agreement"] == pytest.approx(1 / 6)
    assert per["ann"]["done"] == 2 and per["cat"]["done"] == 1
    assert s["tasks_complete"] == 1 and s["overlapping_tasks"] == 2


def test_stats_cli(setup, capsys):
    db, tok, client, _ = setup
    for name in ("alice", "bob"):
        client.post(f"/l/{tok[name]}/api/submit", json={"task": next_task(client, tok[name])["task"], "ranking": [0, 1, 2]})
    assert main(["label", "stats", "--db", str(db.path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"alice\s+1\s+0\s+0", out) and "no task ranked by 2+ labelers" in out
    assert main(["label", "stats", "--db", str(db.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["submissions"] == 2


def test_401_without_a_valid_token(setup):
    db, tok, client, _ = setup
    before = db.submissions()
    for method, url, kw in [
        ("get", "/", {}),
        ("get", "/l/not-a-token", {}),
        ("get", "/l/not-a-token/task/1", {}),
        ("get", "/l/not-a-token/api/next", {}),
        ("get", "/l/not-a-token/api/task/1", {}),
        ("post", "/l/not-a-token/submit", {"data": {"task": "1", "ranking": "[0,1,2]"}}),
        ("post", "/l/not-a-token/skip", {"data": {"task": "1"}}),
        ("post", "/l/not-a-token/api/submit", {"json": {"task": 1, "ranking": [0, 1, 2]}}),
        ("post", "/l/" + "x" * 500 + "/api/submit", {"json": {"task": 1, "ranking": [0, 1, 2]}}),
    ]:
        r = getattr(client, method)(url, **kw)
        assert r.status_code == 401, (url, r.status_code)
        assert "answer 0" not in r.get_data(as_text=True)
    assert db.submissions() == before
    # Nothing was assigned to anyone by those requests.
    assert all(db.progress(lab)["open"] == 0 for lab in db.labelers())


def test_another_labelers_answers_are_unreachable(setup):
    db, tok, client, _ = setup
    a, b = tok["alice"], tok["bob"]
    assert next_task(client, a)["task"] == 1
    client.post(f"/l/{a}/api/submit", json={"task": 1, "ranking": [2, 0, 1], "flags": {"0": ["harmful"]}})
    # bob cannot read alice's answer, nor her open task...
    assert next_task(client, a)["task"] == 2
    for url in (f"/l/{b}/task/1", f"/l/{b}/api/task/1", f"/l/{b}/task/2", f"/l/{b}/api/task/2", f"/l/{b}/api/task/99"):
        r = client.get(url)
        assert r.status_code == 404, url
    # ... nor change it, by form or API (same answer whether or not the task exists).
    for task in (1, 2, 99):
        r = client.post(f"/l/{b}/api/submit", json={"task": task, "ranking": [0, 1, 2]})
        assert r.status_code == 403 and "not assigned to you" in r.json["error"]
        r = client.post(f"/l/{b}/submit", data={"task": str(task), "ranking": "[0,1,2]"})
        assert r.status_code == 403
        assert client.post(f"/l/{b}/api/skip", json={"task": task}).status_code == 403
    # bob's own pages never show alice's ranking or flags.
    t = next_task(client, b)
    assert t["task"] == 3 and t["answer"] is None
    client.post(f"/l/{b}/api/submit", json={"task": 3, "ranking": [0, 1, 2]})
    assert client.get(f"/l/{b}/api/task/3").json["answer"] == {"ranking": [0, 1, 2], "flags": [[], [], []]}
    subs = {(s["task"], s["labeler"]): s for s in db.submissions()}
    assert subs[(1, "alice")]["ranking"] == [2, 0, 1] and subs[(1, "alice")]["flags"][0] == ["harmful"]
    assert set(subs) == {(1, "alice"), (3, "bob")}


@pytest.mark.parametrize("ranking, msg", [
    ([0, 1], "missing [2]"),
    ([0, 1, 1], "more than once"),
    ([0, 1, 3], "out of range"),
    ([[0, 1, 2]], "all responses are tied"),
    ([0, "1", 2], "ranking[1]"),
    ([0, True, 2], "ranking[1]"),
    ("not json", "not valid JSON"),
    ({"0": 1}, "expected a list"),
    (None, "ranking"),
])
def test_ranking_must_be_a_permutation_of_the_shown_responses(setup, ranking, msg):
    db, tok, client, _ = setup
    a = tok["alice"]
    next_task(client, a)
    r = client.post(f"/l/{a}/api/submit", json={"task": 1, "ranking": ranking})
    assert r.status_code == 400 and msg in r.json["error"], r.json
    # The form path re-renders the task with the error, and stores nothing.
    r = client.post(f"/l/{a}/submit", data={"task": "1", "ranking": json.dumps(ranking)})
    assert r.status_code == 400 and 'id="server-error"' in r.get_data(as_text=True)
    assert db.submissions() == []


@pytest.mark.parametrize("flags, msg", [
    ({"0": ["spam"]}, "unknown flag"),
    ({"5": ["harmful"]}, "out of range"),
    ([["harmful"]], "list of 3"),
    ({"0": "harmful"}, "list of flag names"),
])
def test_bad_flags_and_bodies_are_rejected(setup, flags, msg):
    db, tok, client, _ = setup
    a = tok["alice"]
    next_task(client, a)
    r = client.post(f"/l/{a}/api/submit", json={"task": 1, "ranking": [0, 1, 2], "flags": flags})
    assert r.status_code == 400 and msg in r.json["error"], r.json
    assert client.post(f"/l/{a}/api/submit", data="[1, 2]", content_type="application/json").status_code == 400
    assert client.post(f"/l/{a}/submit", data={"task": "one", "ranking": "[0,1,2]"}).status_code == 400
    assert client.post(f"/l/{a}/api/submit", json={"task": 1, "ranking": [0, 1, 2], "pad": "x" * (2 << 20)}).status_code == 413
    assert db.submissions() == []


def test_script_in_a_response_is_rendered_inert(tmp_path):
    write_tasks(tmp_path / "tasks.jsonl", n=0, extra=[
        {"prompt": "Q: <b>bold</b> & </pre><script>alert('p')</script>\nA:", "responses": [SCRIPT, " fine", " <i>it</i>"]}])
    db = LabelDB(tmp_path / "label.db")
    db.add_tasks_file(tmp_path / "tasks.jsonl")
    tok = db.add_labeler("alice")
    client = create_app(db).test_client()
    client.post(f"/l/{tok}/next")
    r = client.get(f"/l/{tok}")
    html = r.get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(&#39;p&#39;)" in html and "&lt;b&gt;bold&lt;/b&gt; &amp;" in html
    assert "<script>alert" not in html and "<img" not in html and "<i>it" not in html
    # The only script is the app's own file; inline scripts are forbidden by the CSP anyway.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/label.js">']
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Referrer-Policy"] == "no-referrer"
    # The revision page (own answer shown) escapes too.
    client.post(f"/l/{tok}/api/submit", json={"task": 1, "ranking": [1, 0, 2]})
    html = client.get(f"/l/{tok}/task/1").get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)" in html


def test_tasks_file_validation_and_idempotent_loading(tmp_path):
    db = LabelDB(tmp_path / "label.db")
    rows = write_tasks(tmp_path / "tasks.jsonl", n=3)
    assert db.add_tasks_file(tmp_path / "tasks.jsonl") == {"read": 3, "added": 3, "already_present": 0, "tasks": 3}
    # Loading again (e.g. restarting `serve --tasks`) adds nothing; a longer file adds the new ones.
    write_tasks(tmp_path / "tasks.jsonl", n=5)
    assert db.add_tasks_file(tmp_path / "tasks.jsonl")["added"] == 2
    # Ranked lines are fine (the ranking is ignored); bad lines name file, line and field, and
    # nothing of a bad file is loaded.
    bad = tmp_path / "bad.jsonl"
    for lines, field in [
        ([rows[0], {"prompt": "p", "responses": [" a", " a"]}], "responses[1]"),
        ([{"prompt": "p", "responses": [" a"]}], "responses"),
        ([{"prompt": "", "responses": [" a", " b"]}], "prompt"),
        ([{"responses": [" a", " b"]}], "prompt"),
        ([{"prompt": "p"}], "responses"),
        ([{"prompt": "p", "responses": [" a", ""]}], "responses[1]"),
    ]:
        bad.write_text("".join(json.dumps(x) + "\n" for x in [{"prompt": "new", "responses": [" x", " y"], "ranking": [1, 0]}] + lines))
        with pytest.raises(DataError) as e:
            db.add_tasks_file(bad)
        assert e.value.field == field and e.value.line == len(lines) + 1, str(e.value)
    assert db.n_tasks() == 5
    with pytest.raises(InstructRLError, match="no labeling database"):
        LabelDB(tmp_path / "missing.db", create=False)
    (tmp_path / "junk.db").write_text("not sqlite at all" * 100)
    with pytest.raises(InstructRLError, match="not a labeling database"):
        LabelDB(tmp_path / "junk.db")


def test_cli_add_labeler_and_errors(tmp_path, capsys):
    dbp = tmp_path / "label.db"
    assert main(["label", "add-labeler", "alice", "--db", str(dbp), "--url", "http://127.0.0.1:9999/"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"http://127\.0\.0\.1:9999/l/(\S+)", out).group(1)
    db = LabelDB(dbp)
    assert db.labeler_by_token(token).name == "alice"
    assert main(["label", "add-labeler", "alice", "--db", str(dbp)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["label", "add-labeler", "alice", "--db", str(dbp), "--new-token"]) == 0
    assert db.labeler_by_token(token) is None  # the old link stops working
    assert main(["label", "add-labeler", "bad name!", "--db", str(dbp)]) == 2
    assert main(["label", "export", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no labeling database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
    # serve with no tasks anywhere is a clear error, not a server with nothing to do.
    assert main(["label", "serve", "--db", str(dbp), "--port", "0"]) == 2
    assert "no tasks" in capsys.readouterr().err
    assert main(["label", "export", "--db", str(dbp), "--out", str(tmp_path / "x.jsonl")]) == 0
    assert (tmp_path / "x.jsonl").read_text() == ""


def test_display_order_is_shuffled_per_labeler_and_stable(setup):
    db, tok, client, _ = setup
    assert letters(28)[:3] == ["A", "B", "C"] and letters(28)[26:] == ["AA", "AB"]
    lab = db.labeler_by_token(tok["alice"])
    task = db.task(1)
    assert display_order(task, lab) == display_order(task, lab)
    assert sorted(display_order(task, lab)) == [0, 1, 2]
    orders = {tuple(display_order(db.task(t), lab)) for t in range(1, 5)}
    assert len(orders) > 1
    client.post(f"/l/{tok['alice']}/next")
    html = client.get(f"/l/{tok['alice']}").get_data(as_text=True)
    assert re.findall(r'data-index="(\d)"', html) == [str(i) for i in display_order(task, lab)]
    assert validate_ranking("[[0], 2, 1]", 3) == [0, 2, 1]


# ------------------------------------------------------------------------------ hardening (issue 17.5)


def test_an_unexpected_error_logs_no_token_and_tells_the_client_nothing(setup, monkeypatch, caplog):
    import logging

    db, tok, client, _ = setup
    a = tok["alice"]

    def boom(*args, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(db, "progress", boom)
    with caplog.at_level(logging.DEBUG):
        r = client.get(f"/l/{a}")
        rj = client.post(f"/l/{a}/api/next")
    assert r.status_code == 500 and rj.status_code == 500 and rj.json == {"error": "internal error"}
    assert a not in caplog.text and "disk on fire" in caplog.text and "/l/…" in caplog.text
    assert "disk on fire" not in r.get_data(as_text=True) and a not in r.get_data(as_text=True)


def test_huge_task_ids_and_deep_json_are_400s_not_500s(setup):
    db, tok, client, _ = setup
    a = tok["alice"]
    for task in (2**63, 2**64 + 5, -1, 0):
        r = client.post(f"/l/{a}/api/submit", json={"task": task, "ranking": [0, 1, 2]})
        assert r.status_code == 403, (task, r.status_code)
        assert client.post(f"/l/{a}/api/skip", json={"task": task}).status_code == 403
    assert client.get(f"/l/{a}/task/{2**63}").status_code == 404
    assert client.get(f"/l/{a}/api/task/{2**70}").status_code == 404
    assert client.post(f"/l/{a}/submit", data={"task": str(2**70), "ranking": "[0,1,2]"}).status_code == 400
    deep = b"[" * 50_000 + b"]" * 50_000
    r = client.post(f"/l/{a}/api/submit", data=deep, content_type="application/json")
    assert r.status_code == 400 and "nested" in r.json["error"]
    r = client.post(f"/l/{a}/api/submit", data=b'{"task": 1, "ranking": "' + b"[" * 5000 + b'"}',
                    content_type="application/json")  # brackets inside a string do not count
    assert r.status_code == 403  # (task 1 is not assigned yet) — parsed, not refused for depth


def test_a_skipped_task_cannot_be_answered(tmp_path):
    db, t, client = overlap_db(tmp_path, 2, ("alice", "bob", "carol"))
    assert next_task(client, t["alice"])["task"] == 1
    assert client.post(f"/l/{t['alice']}/api/skip", json={"task": 1}).status_code == 200
    for who in ("bob", "carol"):
        assert next_task(client, t[who])["task"] == 1
        client.post(f"/l/{t[who]}/api/submit", json={"task": 1, "ranking": [0, 1, 2]})
    r = client.post(f"/l/{t['alice']}/api/submit", json={"task": 1, "ranking": [0, 1, 2]})
    assert r.status_code == 409 and "skipped" in r.json["error"]
    assert client.post(f"/l/{t['alice']}/submit", data={"task": "1", "ranking": "[0,1,2]"}).status_code == 409
    assert sum(s["task"] == 1 for s in db.submissions()) == 2  # overlap 2: two answers, not three


def test_gets_change_nothing_and_cross_origin_posts_are_refused(setup):
    db, tok, client, _ = setup
    a = tok["alice"]
    lab = db.labeler_by_token(a)
    for url in (f"/l/{a}", f"/l/{a}/api/next"):
        assert client.get(url).status_code == 200
    assert db.progress(lab)["open"] == 0 and client.get(f"/l/{a}/api/next").json["task"] is None
    assert client.get(f"/l/{a}/next").status_code == 405  # assigning is POST only
    # ``Origin: null`` alone (a sandboxed frame, a file: page) is refused; with a browser's
    # Sec-Fetch-Site: same-origin it is our own form under Referrer-Policy no-referrer (Chromium).
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"},
                    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}):
        assert client.post(f"/l/{a}/next", headers=headers).status_code == 403
        assert client.post(f"/l/{a}/api/next", headers=headers).status_code == 403
    assert db.progress(lab)["open"] == 0
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/l/{a}/next", headers=same).status_code == 303 and db.progress(lab)["open"] == 1
    chromium = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/l/{a}/api/next", headers=chromium).status_code == 200


def test_database_file_is_private(tmp_path):
    import os
    import stat

    db = LabelDB(tmp_path / "label.db")
    db.add_labeler("alice")
    for p in tmp_path.glob("label.db*"):
        assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0, (p, oct(os.stat(p).st_mode))
    loose = tmp_path / "old.db"
    LabelDB(loose)
    os.chmod(loose, 0o644)
    LabelDB(loose)  # opening an existing one makes it private too
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o600


def test_server_caps_threads_and_drops_idle_connections(setup, monkeypatch):
    import socket
    import threading
    import time

    from instructrl.label import app as app_mod

    db, tok, _, _ = setup
    monkeypatch.setattr(app_mod, "MAX_THREADS", 2)
    monkeypatch.setattr(app_mod, "CONNECTION_TIMEOUT_S", 1)
    server = app_mod.make_server(db, "127.0.0.1", 0)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        before = threading.active_count()
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]  # half-open: send nothing
        time.sleep(0.5)
        assert threading.active_count() - before <= 2
        for s in socks[2:]:  # beyond the cap: closed at once
            s.settimeout(2)
            assert s.recv(1) == b""
        time.sleep(1.5)  # the idle two time out and their threads end
        assert threading.active_count() - before <= 0
        for s in socks:
            s.close()
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/l/{tok['alice']}/api/next", timeout=5) as r:
            assert r.status == 200  # and it still serves
    finally:
        server.shutdown()
        server.server_close()


def test_cli_port_and_export_folder_errors(tmp_path, capsys):
    dbp = tmp_path / "label.db"
    LabelDB(dbp).add_labeler("alice")
    write_tasks(tmp_path / "tasks.jsonl")
    assert main(["label", "serve", "--db", str(dbp), "--tasks", str(tmp_path / "tasks.jsonl"), "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--port must be in [0, 65535]" in err
    assert main(["label", "export", "--db", str(dbp), "--out", str(tmp_path / "missing" / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "does not exist" in err and "Traceback" not in err


def test_chat_tasks_keep_their_messages_through_page_and_export(tmp_path):
    """A chat-form task ({"messages", "responses"}) is shown as its conversation and exported in chat
    form, so `instructrl rm` renders it with the model's chat template (not as flattened text)."""
    from instructrl.data.readers import read_rankings

    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit <b>now</b>."}]
    (tmp_path / "tasks.jsonl").write_text(json.dumps({"messages": msgs, "responses": ["Apple.", "No."]}) + "\n"
                                          + json.dumps({"prompt": "Q: plain?\nA:", "responses": [" a", " b"]}) + "\n")
    db = LabelDB(tmp_path / "label.db")
    assert db.add_tasks_file(tmp_path / "tasks.jsonl")["added"] == 2
    assert db.add_tasks_file(tmp_path / "tasks.jsonl")["added"] == 0  # same chat task twice: one task
    tok = db.add_labeler("alice")
    client = create_app(db).test_client()
    t = next_task(client, tok)
    assert t["task"] == 1 and t["messages"] == msgs and "User: Name a fruit" in t["prompt"]
    html = client.get(f"/l/{tok}").get_data(as_text=True)
    assert "Name a fruit &lt;b&gt;now&lt;/b&gt;." in html and "Be brief." in html
    assert client.post(f"/l/{tok}/api/submit", json={"task": 1, "ranking": [0, 1]}).status_code == 200
    t = next_task(client, tok)
    assert "messages" not in t
    assert client.post(f"/l/{tok}/api/submit", json={"task": 2, "ranking": [1, 0]}).status_code == 200
    out = tmp_path / "rankings.jsonl"
    assert db.export(out) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["messages"] == msgs and "prompt" not in lines[0] and lines[1]["prompt"] == "Q: plain?\nA:"
    rs = read_rankings(out)
    assert rs[0].messages == msgs and rs[0].responses == ["Apple.", "No."] and rs[1].messages is None


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = LabelDB(path)
    write_tasks(tmp_path / "tasks.jsonl", n=2)
    db.add_tasks_file(tmp_path / "tasks.jsonl")
    with sqlite3.connect(path) as con:  # make it look like a file written before tasks.messages existed
        con.execute("ALTER TABLE tasks DROP COLUMN messages")
        con.execute("PRAGMA user_version=1")
    db = LabelDB(path)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.add_tasks_file(tmp_path / "tasks.jsonl")["added"] == 0  # old keys still match
    assert db.task(1).messages is None and db.task(1).prompt.startswith("Q: question 0")
