"""The labeling web app (Flask): one page per task, a JSON API, served threaded by werkzeug.

Routes (``TOKEN`` is a labeler's personal token; every route below answers 401 without a valid one):

- ``GET /l/TOKEN``: the labeler's open task (resumed if they left one open), else a "next task"
  button (``POST /l/TOKEN/next`` assigns one), or "all done". ``GET /l/TOKEN/task/ID``: one of
  *their own* tasks, with their answer, to revise. GETs never change anything.
- ``POST /l/TOKEN/submit`` (form: ``task``, ``ranking`` JSON, ``flag_<i>`` checkboxes) and
  ``POST /l/TOKEN/skip`` (form: ``task``): then the next task is assigned and a redirect shows it.
- ``POST /l/TOKEN/api/next`` (assigns the next task, or returns the open one), ``GET
  /l/TOKEN/api/next`` (the open task, assigning nothing), ``GET /l/TOKEN/api/task/ID``, ``POST
  /l/TOKEN/api/submit`` (JSON ``{"task", "ranking", "flags"}``), ``POST /l/TOKEN/api/skip`` (JSON
  ``{"task"}``): the same for scripts.

Security: the token is the only credential (it is in the link); a labeler can reach only tasks
assigned to them and only their own answers, and not a task they skipped; a ranking must be a
permutation of the shown responses; every text is escaped by Jinja and the page's script only ever
sets ``textContent``; a Content-Security-Policy forbids inline scripts. State changes are POST only
and refused (403) when the browser says they come from another origin (``Origin`` /
``Sec-Fetch-Site``). Task ids are bounded (SQLite's 64 bits) and JSON bodies are at most 1 MiB and
``MAX_JSON_DEPTH`` deep (else 400). Tokens are redacted from every log line, the framework's
exception log included; an unexpected error answers a plain 500 without details. The database file
is created 0600.

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
MAX_JSON_DEPTH = 32  # a submission nests 3 deep; json.loads recurses (50,000 deep: RecursionError)
#: Connections handled at once, and how long a connection may sit idle (half-open clients).
MAX_THREADS = 64
CONNECTION_TIMEOUT_S = 30
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


_TOKEN_IN_PATH = re.compile(r"(/l/)[^/\s?\"']+")


def redact(text: str) -> str:
    """Text with every labeler token in a `/l/TOKEN` path replaced by an ellipsis."""
    return _TOKEN_IN_PATH.sub(r"\1…", text)


class RedactTokens(logging.Filter):
    """A logging filter that redacts tokens from a record's message (and formatted traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg, record.args = redact(msg), ()
        if record.exc_info:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        return True


def json_depth(raw: bytes) -> int:
    """The deepest nesting of [ and { in a JSON text (outside strings), without parsing it."""
    depth = best = 0
    in_str = esc = False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:  # backslash
                esc = True
            elif b == 0x22:  # quote
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            best = max(best, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return best


def same_origin() -> bool:
    """False when the browser says a request comes from another site (CSRF); scripts send neither header."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin == "null":
        # Chromium sends ``Origin: null`` on form posts under our own ``Referrer-Policy: no-referrer``;
        # then only the browser-set (unforgeable by a page) Sec-Fetch-Site can vouch for the request.
        return site == "same-origin"
    return origin is None or origin == request.host_url.rstrip("/")


def create_app(db: LabelDB | str) -> Flask:
    """The Flask app over the labeling database ``db`` (a :class:`LabelDB` or a path)."""
    db = db if isinstance(db, LabelDB) else LabelDB(db)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)
    app.json.sort_keys = False
    app.extensions["instructrl_label_db"] = db
    for logger in (app.logger, logging.getLogger("werkzeug")):
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())

    def log_exception(exc_info):  # Flask's own logs "Exception on /l/TOKEN/...": redacted here
        app.logger.error("Exception on %s [%s]", redact(request.path), request.method, exc_info=exc_info)

    app.log_exception = log_exception

    @app.before_request
    def refuse_cross_origin():
        if request.method == "POST" and not same_origin():
            abort(403, "cross-origin request refused")

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

    @app.errorhandler(Exception)
    def unexpected(e):  # logged (redacted) by log_exception; the client learns nothing more
        if isinstance(e, HTTPException):
            return http_error(e)
        app.log_exception((type(e), e, e.__traceback__))
        if wants_json():
            return jsonify(error="internal error"), 500
        return render_template("message.html", title="Error", message="Something went wrong; nothing was saved.",
                               labeler=None), 500

    def page(lab: Labeler, token: str, task: Task | None, answer=None, error=None, status=200):
        progress = db.progress(lab)
        if task is None:
            more = progress["available"] > 0
            return render_template("message.html", title="Next task" if more else "All done", labeler=lab, message=(
                f"You have ranked {progress['done']} tasks; {progress['available']} are waiting." if more else
                f"No task is waiting for you. You have ranked {progress['done']} tasks — thank you!"),
                prev_task=db.last_answered(lab), token=token, start=more), status
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
        return page(lab, token, db.open_task(lab))

    @app.post("/l/<token>/next")
    def start_next(token):
        db.next_task(labeler_or_401(token))
        return redirect(url_for("current", token=token), code=303)

    @app.get("/l/<token>/task/<int:task_id>")
    def view_task(token, task_id):
        lab = labeler_or_401(token)
        task, answer = own_view_or_404(lab, task_id)
        return page(lab, token, task, answer)

    def _form_task() -> int:
        text = request.form.get("task", "")
        if not text.isdigit() or len(text) > 19:
            raise LabelError("task: expected a task id")
        return int(text)

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
        db.next_task(lab)  # the POST hands out the next task; the GET it redirects to only shows it
        return redirect(url_for("current", token=token), code=303)

    @app.post("/l/<token>/skip")
    def skip(token):
        lab = labeler_or_401(token)
        try:
            db.skip(lab, _form_task())
        except LabelError as e:
            return render_template("message.html", title="Not skipped", message=str(e), labeler=lab), e.status
        db.next_task(lab)
        return redirect(url_for("current", token=token), code=303)

    # -- JSON API ------------------------------------------------------------------------------

    def _task_json(task: Task | None, lab: Labeler, answer=None) -> dict:
        if task is None:
            return {"task": None, "progress": db.progress(lab)}
        return {"task": task.id, "prompt": task.prompt, **({"messages": task.messages} if task.messages else {}),
                "responses": task.responses, "display_order": display_order(task, lab), "answer": answer, "progress": db.progress(lab)}

    def _json_body() -> dict:
        if json_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
            raise LabelError(f"JSON body nested more than {MAX_JSON_DEPTH} deep")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise LabelError("expected a JSON object body")
        return body

    @app.get("/l/<token>/api/next")
    def api_open(token):
        lab = labeler_or_401(token)
        return jsonify(_task_json(db.open_task(lab), lab))

    @app.post("/l/<token>/api/next")
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

def _quiet_handler():
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        timeout = CONNECTION_TIMEOUT_S  # a half-open or idle connection is dropped after this

        def log_request(self, code="-", size="-"):  # the request line without the labeler's token
            line = redact(f"{self.command} {self.path}")
            log.info("%s %s", line, code if isinstance(code, int) else getattr(code, "value", code))

        def log_error(self, format, *args):
            log.warning("%s", redact(format % args))

    return Handler


def _capped_server_class():
    """werkzeug's threaded server with at most MAX_THREADS connections at once: one more is
    closed at once instead of getting a thread of its own."""
    import threading

    from werkzeug.serving import ThreadedWSGIServer

    class CappedServer(ThreadedWSGIServer):
        slots = threading.BoundedSemaphore(MAX_THREADS)

        def process_request(self, request, client_address):
            if not self.slots.acquire(blocking=False):
                self.shutdown_request(request)
                return
            super().process_request(request, client_address)

        def process_request_thread(self, request, client_address):
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    return CappedServer


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(db: LabelDB | str, host: str = "127.0.0.1", port: int = 8000):
    """A threaded werkzeug server for the app (``.serve_forever()``, ``.shutdown()``, ``.port``), at
    most MAX_THREADS connections at once, each dropped after CONNECTION_TIMEOUT_S idle seconds."""
    import threading

    cls = _capped_server_class()
    server = cls(host, port, create_app(db), handler=_quiet_handler())
    server.slots = threading.BoundedSemaphore(MAX_THREADS)
    return server


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


__all__ = ["create_app", "make_server", "serve", "display_order", "letters", "is_loopback", "redact", "json_depth"]
