"""The labeling web app (Flask): one page per task, a JSON API, served threaded by werkzeug.

Routes (``TOKEN`` is a labeler's personal token; every route below answers 401 without a valid one):

- ``GET /l/TOKEN``: the labeler's current task (resumed if they left one open, else the next one),
  or "all done". ``GET /l/TOKEN/task/ID``: one of *their own* tasks, with their answer, to revise.
- ``POST /l/TOKEN/submit`` (form: ``task``, ``ranking`` JSON, ``flag_<i>`` checkboxes) and
  ``POST /l/TOKEN/skip`` (form: ``task``): then a redirect to the next task.
- ``GET /l/TOKEN/api/next``, ``GET /l/TOKEN/api/task/ID``, ``POST /l/TOKEN/api/submit`` (JSON
  ``{"task", "ranking", "flags"}``), ``POST /l/TOKEN/api/skip`` (JSON ``{"task"}``): the same for
  scripts.

Security: the token is the only credential (it is in the link, so it also stops cross-site form
posts); a labeler can reach only tasks assigned to them and only their own answers; a ranking must
be a permutation of the shown responses; every text is escaped by Jinja and the page's script
only ever sets ``textContent``; a Content-Security-Policy forbids inline scripts; tokens are
redacted from the request log.

The server is werkzeug's threaded server: fine for a small team on loopback (the default). To
open it to a network, put it behind an HTTPS reverse proxy: tokens travel in the URL.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import string

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from instructrl.label.db import FLAGS, LabelDB, LabelError, Labeler, Task

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20  # bytes; a ranking is tiny
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")


def letters(n: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ... (labels of the shown responses)."""
    out = []
    for i in range(n):
        s, j = "", i
        while True:
            s = string.ascii_uppercase[j % 26] + s
            j = j // 26 - 1
            if j < 0:
                break
        out.append(s)
    return out


def display_order(task: Task, labeler: Labeler) -> list[int]:
    """The order a labeler sees a task's responses in: shuffled per (task, labeler), stable across
    reloads, so that no response is favoured by its position in the file."""
    order = list(range(task.k))
    random.Random(f"{task.id}:{labeler.id}").shuffle(order)
    return order


def _cards(task: Task, labeler: Labeler, answer: dict | None) -> list[dict]:
    order = display_order(task, labeler)
    letter = dict(zip(order, letters(task.k)))
    flags = answer["flags"] if answer else [[] for _ in range(task.k)]
    tied = set()
    if answer:  # show the labeler's own ranking: cards in their order, tie boxes ticked
        order = []
        for el in answer["ranking"]:
            group = el if isinstance(el, list) else [el]
            order += group
            tied.update(group[1:])
    return [{"index": i, "letter": letter[i], "text": task.responses[i], "flags": flags[i], "tied": i in tied}
            for i in order]


def create_app(db: LabelDB | str) -> Flask:
    """The Flask app over the labeling database ``db`` (a :class:`LabelDB` or a path)."""
    db = db if isinstance(db, LabelDB) else LabelDB(db)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)
    app.json.sort_keys = False
    app.extensions["instructrl_label_db"] = db

    def labeler_or_401(token: str) -> Labeler:
        lab = db.labeler_by_token(token)
        if lab is None:
            abort(401)
        return lab

    def own_view_or_404(lab: Labeler, task_id: int):
        """The labeler's own view of a task (task, their answer); 404 for any task not assigned to them."""
        try:
            return db.own_view(lab, task_id)
        except LabelError:
            abort(404)

    def wants_json() -> bool:
        return "/api/" in request.path

    @app.after_request
    def headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(HTTPException)
    def http_error(e):
        messages = {401: "This link is not valid. Open the personal link you were given "
                         "(`instructrl label add-labeler NAME` prints it).",
                    413: "Request too large."}
        msg = messages.get(e.code, e.description)
        if wants_json():
            return jsonify(error=msg), e.code
        return render_template("message.html", title=e.name, message=msg, labeler=None), e.code

    @app.errorhandler(LabelError)
    def label_error(e):
        return jsonify(error=str(e)), e.status

    def page(lab: Labeler, token: str, task: Task | None, answer=None, error=None, status=200):
        progress = db.progress(lab)
        if task is None:
            return render_template("message.html", title="All done", labeler=lab, message=(
                f"No task is waiting for you. You have ranked {progress['done']} tasks — thank you!"),
                prev_task=db.last_answered(lab), token=token), status
        prev = db.last_answered(lab)
        return render_template("task.html", labeler=lab, token=token, task=task, cards=_cards(task, lab, answer),
                               flags=FLAGS, answered=answer is not None, progress=progress, error=error,
                               prev_task=prev if prev != task.id else None), status

    # -- pages ---------------------------------------------------------------------------------

    @app.get("/")
    def index():
        abort(401)

    @app.get("/l/<token>")
    def current(token):
        lab = labeler_or_401(token)
        return page(lab, token, db.next_task(lab))

    @app.get("/l/<token>/task/<int:task_id>")
    def view_task(token, task_id):
        lab = labeler_or_401(token)
        task, answer = own_view_or_404(lab, task_id)
        return page(lab, token, task, answer)

    def _form_task() -> int:
        try:
            return int(request.form.get("task", ""))
        except ValueError:
            raise LabelError("task: expected a task id") from None

    @app.post("/l/<token>/submit")
    def submit(token):
        lab = labeler_or_401(token)
        task_id = None
        try:
            task_id = _form_task()
            flags = {}
            for key in request.form:
                m = re.fullmatch(r"flag_(\d+)", key)
                if m:
                    flags[m.group(1)] = request.form.getlist(key)
            db.submit(lab, task_id, request.form.get("ranking", ""), flags)
        except LabelError as e:
            if e.status == 400 and task_id is not None:
                try:
                    task, answer = db.own_view(lab, task_id)
                except LabelError:
                    task = None
                if task is not None:
                    return page(lab, token, task, answer, error=str(e), status=400)
            return render_template("message.html", title="Not saved", message=str(e), labeler=lab), e.status
        return redirect(url_for("current", token=token), code=303)

    @app.post("/l/<token>/skip")
    def skip(token):
        lab = labeler_or_401(token)
        try:
            db.skip(lab, _form_task())
        except LabelError as e:
            return render_template("message.html", title="Not skipped", message=str(e), labeler=lab), e.status
        return redirect(url_for("current", token=token), code=303)

    # -- JSON API ------------------------------------------------------------------------------

    def _task_json(task: Task | None, lab: Labeler, answer=None) -> dict:
        if task is None:
            return {"task": None, "progress": db.progress(lab)}
        return {"task": task.id, "prompt": task.prompt, "responses": task.responses,
                "display_order": display_order(task, lab), "answer": answer, "progress": db.progress(lab)}

    def _json_body() -> dict:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise LabelError("expected a JSON object body")
        return body

    @app.get("/l/<token>/api/next")
    def api_next(token):
        lab = labeler_or_401(token)
        return jsonify(_task_json(db.next_task(lab), lab))

    @app.get("/l/<token>/api/task/<int:task_id>")
    def api_task(token, task_id):
        lab = labeler_or_401(token)
        task, answer = own_view_or_404(lab, task_id)
        return jsonify(_task_json(task, lab, answer))

    @app.post("/l/<token>/api/submit")
    def api_submit(token):
        lab = labeler_or_401(token)
        body = _json_body()
        return jsonify(ok=True, **db.submit(lab, body.get("task"), body.get("ranking"), body.get("flags")))

    @app.post("/l/<token>/api/skip")
    def api_skip(token):
        lab = labeler_or_401(token)
        db.skip(lab, _json_body().get("task"))
        return jsonify(ok=True)

    return app


# ------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------

_TOKEN_IN_PATH = re.compile(r"(/l/)[^/\s?\"]+")


def _quiet_handler():
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log_request(self, code="-", size="-"):  # the request line without the labeler's token
            line = _TOKEN_IN_PATH.sub(r"\1…", f"{self.command} {self.path}")
            log.info("%s %s", line, code if isinstance(code, int) else getattr(code, "value", code))

    return Handler


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(db: LabelDB | str, host: str = "127.0.0.1", port: int = 8000):
    """A threaded werkzeug server for the app (``.serve_forever()``, ``.shutdown()``, ``.port``)."""
    from werkzeug.serving import make_server as _make

    return _make(host, port, create_app(db), threaded=True, request_handler=_quiet_handler())


def serve(db: LabelDB, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted, printing each labeler's link form."""
    if not is_loopback(host):
        log.warning("serving on %s: anyone who can reach it and holds a link can label; tokens travel in the URL, "
                    "so put it behind an HTTPS reverse proxy", host)
    try:
        server = make_server(db, host, port)
    except OSError as e:
        from instructrl.errors import InstructRLError

        raise InstructRLError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(lab.name for lab in db.labelers()) or "none yet: instructrl label add-labeler NAME --db FILE"
    print(f"labeling: {db.n_tasks()} tasks, overlap {db.overlap}, labelers: {names}", flush=True)
    print(f"serving on http://{shown}:{server.port}/l/<token>  (the links add-labeler printed; Ctrl+C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["create_app", "make_server", "serve", "display_order", "letters", "is_loopback"]
