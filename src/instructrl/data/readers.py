"""Readers and validators for the four input file kinds (pure Python, no torch).

File kinds (see DESIGN.md, "Files"):

- **demonstrations** (SFT): JSONL lines ``{"prompt": str, "response": str}`` or chat
  ``{"messages": [{"role": ..., "content": ...}, ...]}`` whose last message is the assistant's.
- **rankings** (RM): K-wise ``{"prompt", "responses": [...], "ranking": [best..worst]}`` with an
  optional ``"labeler"`` (chat form: ``{"messages": [...], "responses", "ranking"}``, the
  conversation before the responses); pairwise ``{"prompt", "chosen", "rejected"}``; Anthropic HH-style
  transcripts ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}``; chat-message
  ``{"chosen": [messages], "rejected": [messages]}`` (optional ``"prompt"``); and the
  summarize-from-feedback style ``{"info": {"post", "title", ...}, "summaries": [{"text"}], "choice"}``.
  The kind is detected per line, so one file may mix them.
- **prompts** (PPO, evaluation): ``{"prompt": str, ...}`` or chat ``{"messages": [...], ...}``; the
  other fields are kept in ``meta``.

How a record becomes the text a model reads (chat template or plain format) is
:mod:`instructrl.data.render`'s job, the same for every stage.
- **pretraining text** (PPO-ptx, the alignment tax): ``{"text": str}`` JSONL or plain ``.txt``.

``.parquet`` files hold the same records as rows (read through pyarrow or ``datasets``, whichever
is installed); their "line" numbers are 1-based row numbers.

Every bad record raises exactly one :class:`~instructrl.errors.DataError` naming the file, the
1-based line and the field; no other exception type escapes for bad user input. Blank lines are
skipped; a file with no records is an error.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from instructrl.errors import DataError

__all__ = [
    "Demonstration",
    "Ranking",
    "Prompt",
    "read_demonstrations",
    "read_rankings",
    "read_prompts",
    "read_pretrain_texts",
    "parse_demonstration",
    "parse_ranking",
    "parse_prompt",
    "render_messages_plain",
    "hh_messages",
    "detect_kind",
    "describe",
    "write_jsonl",
    "read_records",
    "HH_ASSISTANT_MARKER",
    "KINDS",
]

#: Anthropic HH transcripts are split at the last occurrence of this marker.
HH_ASSISTANT_MARKER = "\n\nAssistant:"


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Demonstration:
    """One labeler demonstration: the ideal ``response`` to ``prompt``.

    ``messages`` is the full chat (last message = the assistant's response) when the line was in
    chat form, so that a tokenizer's chat template can render it; ``prompt``/``response`` are then
    the plain fallback rendering (see :func:`render_messages_plain`).
    ``source``/``line`` locate the record in its file (used in later error messages).
    """

    prompt: str
    response: str
    messages: list | None = None
    source: str | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        if self.messages is not None:
            return {"messages": self.messages}
        return {"prompt": self.prompt, "response": self.response}


@dataclass
class Ranking:
    """K responses to one prompt, ranked by a labeler.

    ``ranking`` lists response indices best..worst (a chosen/rejected pair is K=2, ranking
    ``[0, 1]``). ``ties`` holds the groups of indices (two or more each) that share a place, in
    the order they appear in ``ranking``; ``None`` when there are no ties. ``messages`` is the
    conversation before the responses when the record was chat-formatted (for chat templates).
    """

    prompt: str
    responses: list[str]
    ranking: list[int]
    labeler: str | None = None
    ties: list[list[int]] | None = None
    messages: list | None = None
    source: str | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    @property
    def k(self) -> int:
        return len(self.responses)

    def ranks(self) -> list[int]:
        """Rank per response (indexed like ``responses``): 0 = best; tied responses share a rank.

        Ranks are dense: the i-th distinct place in the ranking has rank i.
        """
        group_of: dict[int, int] = {}
        for g, members in enumerate(self.ties or []):
            for i in members:
                group_of[i] = g
        ranks = [0] * len(self.responses)
        group_rank: dict[int, int] = {}
        place = 0
        for i in self.ranking:
            g = group_of.get(i)
            if g is not None and g in group_rank:
                ranks[i] = group_rank[g]
                continue
            ranks[i] = place
            if g is not None:
                group_rank[g] = place
            place += 1
        return ranks

    def comparisons(self) -> list[tuple[int, int]]:
        """All (winner, loser) index pairs implied by the ranking (ties give no pair)."""
        r = self.ranks()
        k = len(r)
        return [(w, l) for w in range(k) for l in range(k) if r[w] < r[l]]

    def to_dict(self) -> dict:
        """The K-wise JSONL form (tie groups written as nested lists)."""
        tie_of = {}
        for members in self.ties or []:
            for i in members:
                tie_of[i] = members
        out: list = []
        seen = set()
        for i in self.ranking:
            if i in seen:
                continue
            if i in tie_of:
                out.append(list(tie_of[i]))
                seen.update(tie_of[i])
            else:
                out.append(i)
                seen.add(i)
        d: dict[str, Any] = {"prompt": self.prompt, "responses": list(self.responses), "ranking": out}
        if self.messages is not None:
            d["messages"] = self.messages
        if self.labeler is not None:
            d["labeler"] = self.labeler
        return d


@dataclass
class Prompt:
    """A prompt for rollouts or evaluation; every other field of the line is kept in ``meta``.

    ``messages`` is the conversation to continue when the line was in chat form
    (``{"messages": [...]}``, or ``{"prompt": [...]}``); ``prompt`` is then its plain rendering
    (:func:`render_messages_plain`). :mod:`instructrl.data.render` renders either for a model.
    """

    prompt: str
    meta: dict = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)
    messages: list | None = None

    def to_dict(self) -> dict:
        if self.messages is not None:
            return {"messages": self.messages, **self.meta}
        return {"prompt": self.prompt, **self.meta}


# --------------------------------------------------------------------------------------------
# Low-level: lines of a file -> (line number, JSON object)
# --------------------------------------------------------------------------------------------


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(path, None, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, None, "is a directory, expected a file") from None
    except OSError as e:
        raise DataError(path, None, None, f"cannot read file: {e.strerror or e}") from None


def _text_lines(path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line) for every non-blank line; bad UTF-8 -> DataError."""
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark written by some editors
        data = data[3:]
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                path, n, None, f"not valid UTF-8 (byte {e.start + 1} of the line); re-encode the file as UTF-8"
            ) from None
        text = text.rstrip("\r")
        if text.strip():
            yield n, text


def _is_parquet(path) -> bool:
    return str(path).lower().endswith(".parquet")


def _parquet_rows(path) -> Iterator[tuple[int, Any]]:
    """Rows of a parquet file as dicts, numbered from 1. Imports pyarrow / datasets lazily."""
    if not os.path.exists(path):
        raise DataError(path, None, None, "file not found")
    rows = None
    try:
        import pyarrow.parquet as pq  # type: ignore
    except ImportError:
        pq = None
    try:
        if pq is not None:
            rows = pq.read_table(str(path)).to_pylist()
        else:
            try:
                import datasets  # type: ignore
            except ImportError:
                raise DataError(
                    path,
                    None,
                    None,
                    "reading .parquet files needs pyarrow or datasets: `pip install pyarrow` "
                    "(or convert the file to JSONL)",
                ) from None
            rows = list(datasets.Dataset.from_parquet(str(path)))
    except DataError:
        raise
    except Exception as e:  # a corrupt file: pyarrow raises its own error types
        raise DataError(path, None, None, f"cannot read parquet file: {e}") from None
    for n, row in enumerate(rows, start=1):
        yield n, row


def _records(path) -> Iterator[tuple[int, Any]]:
    """Yield (line, parsed JSON value) for each record of a JSONL or parquet file."""
    if _is_parquet(path):
        yield from _parquet_rows(path)
        return
    for n, text in _text_lines(path):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e) or type(e).__name__
            where = f" at column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            raise DataError(path, n, None, f"malformed JSON{where}: {msg}") from None
        yield n, obj


def _read_all(path, parse: Callable[[Any, Any, int], Any]) -> list:
    """``[parse(obj, path, line) for each record]`` of a JSONL/parquet file; no records -> DataError."""
    out = [parse(obj, path, n) for n, obj in _records(path)]
    if not out:
        raise DataError(path, None, None, "no records (the file is empty or has only blank lines)")
    return out


#: Public name for other file kinds (e.g. benchmarks): ``read_records(path, parse)`` where
#: ``parse(obj, path, line)`` validates one parsed JSON value and raises DataError if it is bad.
read_records = _read_all


# --------------------------------------------------------------------------------------------
# Field validation helpers
# --------------------------------------------------------------------------------------------


def _type_name(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number" if isinstance(v, (int, float)) else type(v).__name__
    )


def _require_object(obj, path, line) -> dict:
    if not isinstance(obj, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {_type_name(obj)}")
    return obj


def _nonempty_str(value, path, line, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(path, line, name, f"expected a string, got {_type_name(value)}")
    if not value.strip():
        raise DataError(path, line, name, "is empty (or only whitespace)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a JSON escape like "\ud800" decodes to a lone surrogate
        raise DataError(path, line, name, "contains an invalid \\u escape (a lone UTF-16 surrogate)") from None
    return value


def _get_str(obj: dict, key: str, path, line) -> str:
    if key not in obj:
        raise DataError(path, line, key, "missing field")
    return _nonempty_str(obj[key], path, line, key)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _messages(value, path, line, name: str) -> list[dict]:
    """Validate a chat message list: [{"role": str, "content": str}, ...], non-empty."""
    if not isinstance(value, list):
        raise DataError(path, line, name, f"expected a list of messages, got {_type_name(value)}")
    if not value:
        raise DataError(path, line, name, "is an empty list of messages")
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise DataError(path, line, where, f"expected a message object, got {_type_name(m)}")
        for key in ("role", "content"):
            if key not in m:
                raise DataError(path, line, f"{where}.{key}", "missing field")
            if not isinstance(m[key], str):
                raise DataError(path, line, f"{where}.{key}", f"expected a string, got {_type_name(m[key])}")
        if not m["role"].strip():
            raise DataError(path, line, f"{where}.role", "is empty (or only whitespace)")
        for key in ("role", "content"):
            try:
                m[key].encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(path, line, f"{where}.{key}", "contains an invalid \\u escape (a lone UTF-16 surrogate)") from None
    return value


def render_messages_plain(messages: list[dict]) -> str:
    """Plain-text rendering of a conversation, used when no chat template is available.

    Each message becomes ``"<Role>: <content>"`` (role capitalised: ``System``, ``User``,
    ``Assistant``, ...), messages are joined by ``"\\n"``, and the text ends with
    ``"\\nAssistant:"`` so that the model continues as the assistant. Example:
    ``[{"role": "user", "content": "Hi"}]`` -> ``"User: Hi\\nAssistant:"``.
    """
    lines = [f"{m['role'].strip().capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines + ["Assistant:"])


def _plain_response(content: str) -> str:
    # The plain rendering ends with "Assistant:"; the response starts with a space, as in the
    # world's text format (a prompt ends with "A:", a response starts with " ").
    return content if content[:1].isspace() else " " + content


def _split_chat(messages: list[dict], path, line, name: str) -> tuple[list[dict], str]:
    """(messages before the response, response content); the last message must be the assistant's."""
    last = messages[-1]
    if last["role"] != "assistant":
        raise DataError(
            path, line, f"{name}[{len(messages) - 1}].role",
            f"the last message must have role 'assistant', got {last['role']!r}",
        )
    _nonempty_str(last["content"], path, line, f"{name}[{len(messages) - 1}].content")
    return messages[:-1], last["content"]


# --------------------------------------------------------------------------------------------
# Demonstrations
# --------------------------------------------------------------------------------------------


def parse_demonstration(obj, path=None, line: int | None = None) -> Demonstration:
    """Validate one demonstration record (a parsed JSON value) and return it."""
    obj = _require_object(obj, path, line)
    if "messages" in obj:
        messages = _messages(obj["messages"], path, line, "messages")
        before, content = _split_chat(messages, path, line, "messages")
        if not before:
            raise DataError(path, line, "messages", "needs at least one message before the assistant's response")
        prompt = render_messages_plain(before)
        return Demonstration(prompt, _plain_response(content), messages, source=_src(path), line=line)
    if "prompt" not in obj:
        raise DataError(path, line, "prompt", "missing field (a demonstration needs 'prompt' and 'response', or 'messages')")
    prompt = _get_str(obj, "prompt", path, line)
    response = _get_str(obj, "response", path, line)
    return Demonstration(prompt, response, None, source=_src(path), line=line)


def read_demonstrations(path) -> list[Demonstration]:
    """Read a demonstrations file (JSONL or parquet). See :func:`parse_demonstration`.

    Chat lines keep their ``messages``; their ``prompt`` is :func:`render_messages_plain` of the
    messages before the last and their ``response`` the last message's content (with a leading
    space added when it has none), a fallback for tokenizers without a chat template.
    """
    return _read_all(path, parse_demonstration)


def _src(path) -> str | None:
    return str(path) if path is not None else None


# --------------------------------------------------------------------------------------------
# Rankings
# --------------------------------------------------------------------------------------------


def _parse_ranking_order(value, k: int, path, line) -> tuple[list[int], list[list[int]] | None]:
    """``ranking`` -> (flat best..worst order, tie groups or None). Elements: int or list of ints."""
    if not isinstance(value, list):
        raise DataError(path, line, "ranking", f"expected a list of response indices, got {_type_name(value)}")
    flat: list[int] = []
    ties: list[list[int]] = []
    for pos, el in enumerate(value):
        if _is_int(el):
            group = [el]
        elif isinstance(el, list):
            if not el:
                raise DataError(path, line, f"ranking[{pos}]", "an empty tie group")
            bad = [x for x in el if not _is_int(x)]
            if bad:
                raise DataError(path, line, f"ranking[{pos}]", f"tie group holds a non-integer: {bad[0]!r}")
            group = list(el)
        else:
            raise DataError(
                path, line, f"ranking[{pos}]",
                f"expected a response index or a list of tied indices, got {_type_name(el)}",
            )
        for i in group:
            if not 0 <= i < k:
                raise DataError(path, line, "ranking", f"index {i} is out of range for {k} responses (0..{k - 1})")
            if i in flat:
                raise DataError(path, line, "ranking", f"index {i} appears more than once")
            flat.append(i)
        if len(group) > 1:
            ties.append(group)
    missing = sorted(set(range(k)) - set(flat))
    if missing:
        raise DataError(
            path, line, "ranking",
            f"is not a permutation of the {k} response indices: missing {missing}",
        )
    if len(value) == 1 and k > 1:
        raise DataError(path, line, "ranking", "all responses are tied: a ranking must prefer some response")
    return flat, (ties or None)


def _check_responses(responses: list, path, line, name: str = "responses") -> list[str]:
    if len(responses) < 2:
        raise DataError(path, line, name, f"needs at least 2 responses to rank, got {len(responses)}")
    seen: dict[str, int] = {}
    for i, r in enumerate(responses):
        _nonempty_str(r, path, line, f"{name}[{i}]")
        if r in seen:
            raise DataError(path, line, f"{name}[{i}]", f"duplicate of response {seen[r]}; responses of one prompt must differ")
        seen[r] = i
    return responses


def _labeler(obj, path, line) -> str | None:
    v = obj.get("labeler")
    if v is None:
        return None
    if not isinstance(v, str):
        raise DataError(path, line, "labeler", f"expected a string or null, got {_type_name(v)}")
    return v


def _conversation(obj, path, line) -> tuple[str, list | None]:
    """(plain prompt, messages or None) of a record whose prompt is ``"prompt": str``, a chat
    ``"messages": [...]`` or ``"prompt": [messages]``; with both ``prompt`` (a string) and
    ``messages``, the prompt must be the messages' plain rendering (as `compare` writes it)."""
    msgs = None
    if "messages" in obj:
        msgs = _messages(obj["messages"], path, line, "messages")
    elif isinstance(obj.get("prompt"), list):
        msgs = _messages(obj["prompt"], path, line, "prompt")
    if msgs is None:
        return _get_str(obj, "prompt", path, line), None
    if msgs[-1]["role"] == "assistant":
        raise DataError(path, line, "messages" if "messages" in obj else "prompt",
                        "the conversation to answer must not end with an assistant message")
    plain = render_messages_plain(msgs)
    if isinstance(obj.get("prompt"), str) and "messages" in obj and obj["prompt"] != plain:
        raise DataError(path, line, "prompt", "does not match 'messages' (give one of them, or the plain rendering "
                                              "of the messages as `instructrl compare` writes it)")
    return plain, msgs


def _ranking_kwise(obj, path, line) -> Ranking:
    prompt, msgs = _conversation(obj, path, line)
    responses = obj["responses"]
    if not isinstance(responses, list):
        raise DataError(path, line, "responses", f"expected a list of strings, got {_type_name(responses)}")
    _check_responses(responses, path, line)
    if "ranking" not in obj:
        raise DataError(path, line, "ranking", "missing field")
    flat, ties = _parse_ranking_order(obj["ranking"], len(responses), path, line)
    return Ranking(prompt, list(responses), flat, _labeler(obj, path, line), ties, msgs, source=_src(path), line=line)


def _pair(obj, path, line, prompt, chosen, rejected, messages=None) -> Ranking:
    if chosen == rejected:
        raise DataError(path, line, "rejected", "is identical to 'chosen'; the two responses must differ")
    return Ranking(prompt, [chosen, rejected], [0, 1], _labeler(obj, path, line), None, messages,
                   source=_src(path), line=line)


def _ranking_hh(obj, path, line) -> Ranking:
    parts = {}
    for key in ("chosen", "rejected"):
        text = _get_str(obj, key, path, line)
        cut = text.rfind(HH_ASSISTANT_MARKER)
        if cut < 0:
            raise DataError(
                path, line, key,
                "an Anthropic HH-style transcript needs a '\\n\\nAssistant:' turn (or give a separate 'prompt' field)",
            )
        cut += len(HH_ASSISTANT_MARKER)
        prompt, response = text[:cut], text[cut:]
        if not response.strip():
            raise DataError(path, line, key, "the last assistant turn is empty")
        parts[key] = (prompt, response)
    if parts["chosen"][0] != parts["rejected"][0]:
        raise DataError(
            path, line, "rejected",
            "the conversation before the last '\\n\\nAssistant:' differs from 'chosen'; both must share the prompt",
        )
    return _pair(obj, path, line, parts["chosen"][0], parts["chosen"][1], parts["rejected"][1],
                 messages=hh_messages(parts["chosen"][0]))


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def hh_messages(transcript: str) -> list[dict] | None:
    """The chat messages of an HH-style transcript prompt (``"\\n\\nHuman: ...\\n\\nAssistant:"``), for a
    chat template; None when it is not a clean alternation of turns (it is then used as written)."""
    parts = _HH_TURN.split(transcript)
    if parts[0].strip() or len(parts) < 3:
        return None
    turns = [{"role": "user" if who == "Human" else "assistant", "content": text.strip()}
             for who, text in zip(parts[1::2], parts[2::2])]
    if turns[-1]["role"] != "assistant" or turns[-1]["content"]:  # ends with the empty "Assistant:" cue
        return None
    turns = turns[:-1]
    if not turns or turns[0]["role"] != "user" or any(not t["content"] for t in turns):
        return None
    return turns


def _ranking_chat(obj, path, line) -> Ranking:
    if "rejected" not in obj:
        raise DataError(path, line, "rejected", "missing field")
    chosen = _messages(obj["chosen"], path, line, "chosen")
    rejected = _messages(obj["rejected"], path, line, "rejected")
    before_c, resp_c = _split_chat(chosen, path, line, "chosen")
    before_r, resp_r = _split_chat(rejected, path, line, "rejected")
    if before_c != before_r:
        raise DataError(path, line, "rejected", "the messages before the response differ from 'chosen'; both must share the prompt")
    before = before_c
    if "prompt" in obj:
        p = obj["prompt"]
        if isinstance(p, list):
            p_msgs = _messages(p, path, line, "prompt")
            if not before:
                before = p_msgs
            elif p_msgs != before:
                raise DataError(path, line, "prompt", "does not match the messages before the response in 'chosen'")
        else:
            p_text = _nonempty_str(p, path, line, "prompt")
            if not before:
                before = [{"role": "user", "content": p_text}]
            else:
                users = [m["content"] for m in before if m["role"] == "user"]
                if not users or users[-1].strip() != p_text.strip():
                    raise DataError(path, line, "prompt", "does not match the last user message in 'chosen'")
    if not before:
        raise DataError(path, line, "chosen", "needs at least one message before the assistant's response (or a 'prompt' field)")
    return _pair(obj, path, line, render_messages_plain(before), _plain_response(resp_c), _plain_response(resp_r),
                 messages=before)


def _tldr_prompt(info: dict, path, line) -> str:
    """The summarize-from-feedback (Stiennon et al. 2020) prompt format."""
    body_key = "post" if "post" in info else "article" if "article" in info else None
    if body_key is None:
        raise DataError(path, line, "info.post", "missing field")
    body = _nonempty_str(info[body_key], path, line, f"info.{body_key}")
    head = []
    for key in ("subreddit", "title"):
        v = info.get(key)
        if v is None:
            continue
        if not isinstance(v, str):
            raise DataError(path, line, f"info.{key}", f"expected a string, got {_type_name(v)}")
        head.append(f"{key.upper()}: {'r/' + v if key == 'subreddit' else v}")
    return "\n".join(head + [f"{body_key.upper()}: {body}", "TL;DR:"])


def _ranking_tldr(obj, path, line) -> Ranking:
    info = obj.get("info")
    if not isinstance(info, dict):
        if "info" not in obj:
            raise DataError(path, line, "info", "missing field")
        raise DataError(path, line, "info", f"expected an object, got {_type_name(info)}")
    prompt = _tldr_prompt(info, path, line)
    summaries = obj["summaries"]
    if not isinstance(summaries, list):
        raise DataError(path, line, "summaries", f"expected a list, got {_type_name(summaries)}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict):
            raise DataError(path, line, f"summaries[{i}]", f"expected an object with 'text', got {_type_name(s)}")
        if "text" not in s:
            raise DataError(path, line, f"summaries[{i}].text", "missing field")
        texts.append(s["text"])
    for i, t in enumerate(texts):
        _nonempty_str(t, path, line, f"summaries[{i}].text")
    if len(texts) < 2:
        raise DataError(path, line, "summaries", f"needs at least 2 summaries to compare, got {len(texts)}")
    seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        if t in seen:
            raise DataError(path, line, f"summaries[{i}].text", f"duplicate of summary {seen[t]}")
        seen[t] = i
    if "choice" not in obj:
        raise DataError(path, line, "choice", "missing field")
    choice = obj["choice"]
    if not _is_int(choice):
        raise DataError(path, line, "choice", f"expected an integer index, got {_type_name(choice)}")
    if not 0 <= choice < len(texts):
        raise DataError(path, line, "choice", f"index {choice} is out of range for {len(texts)} summaries")
    rest = [i for i in range(len(texts)) if i != choice]
    ties = [rest] if len(rest) > 1 else None  # only the best is known; the others share a place
    worker = obj.get("worker", obj.get("labeler"))
    labeler = worker if isinstance(worker, str) else None
    # messages: the post as one user message for a chat template; the plain rendering is `prompt` as written.
    return Ranking(prompt, texts, [choice] + rest, labeler, ties, [{"role": "user", "content": prompt}],
                   source=_src(path), line=line)


def parse_ranking(obj, path=None, line: int | None = None) -> Ranking:
    """Validate one ranking record in any accepted format (detected from its keys)."""
    obj = _require_object(obj, path, line)
    if "responses" in obj:
        return _ranking_kwise(obj, path, line)
    if "summaries" in obj:
        return _ranking_tldr(obj, path, line)
    if "chosen" in obj or "rejected" in obj:
        if "chosen" not in obj:
            raise DataError(path, line, "chosen", "missing field")
        if isinstance(obj["chosen"], list):
            return _ranking_chat(obj, path, line)
        if "prompt" in obj:
            prompt = _get_str(obj, "prompt", path, line)
            chosen = _get_str(obj, "chosen", path, line)
            rejected = _get_str(obj, "rejected", path, line)
            return _pair(obj, path, line, prompt, chosen, rejected)
        return _ranking_hh(obj, path, line)
    raise DataError(
        path, line, "responses",
        "missing field: a ranking needs 'prompt' + 'responses' + 'ranking', or 'chosen' + 'rejected' "
        "(with 'prompt', as HH transcripts, or as chat messages), or 'summaries' + 'choice'",
    )


def read_rankings(path) -> list[Ranking]:
    """Read a rankings / comparisons file (JSONL or parquet); formats may be mixed per line."""
    return _read_all(path, parse_ranking)


# --------------------------------------------------------------------------------------------
# Prompts and pretraining text
# --------------------------------------------------------------------------------------------


def parse_prompt(obj, path=None, line: int | None = None) -> Prompt:
    obj = _require_object(obj, path, line)
    if "prompt" not in obj and "messages" not in obj:
        raise DataError(path, line, "prompt", "missing field (a prompt is {\"prompt\": str} or {\"messages\": [...]})")
    prompt, msgs = _conversation(obj, path, line)
    meta = {k: v for k, v in obj.items() if k not in ("prompt", "messages")}
    return Prompt(prompt, meta, source=_src(path), line=line, messages=msgs)


def read_prompts(path) -> list[Prompt]:
    """Read a prompts file: ``{"prompt": str, ...}`` or chat ``{"messages": [...], ...}`` per line
    (the conversation to answer: it must not end with an assistant message); other fields go to ``meta``."""
    return _read_all(path, parse_prompt)


def _parse_text(obj, path, line) -> str:
    obj = _require_object(obj, path, line)
    return _get_str(obj, "text", path, line)


def read_pretrain_texts(path, split: str = "paragraph") -> list[str]:
    """Read pretraining documents.

    - ``.jsonl`` / ``.json`` / ``.parquet``: one ``{"text": str}`` record per document.
    - Any other extension (``.txt``) is plain UTF-8 text. With ``split="paragraph"`` (default)
      each blank-line-separated paragraph is a document (surrounding whitespace stripped); with
      ``split="file"`` the whole file is one document.
    """
    if split not in ("paragraph", "file"):
        raise ValueError(f"split must be 'paragraph' or 'file', got {split!r}")
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix in (".jsonl", ".json", ".parquet"):
        return _read_all(path, _parse_text)
    lines = list(_text_lines(path))  # validates UTF-8 line by line; drops blank lines
    if not lines:
        raise DataError(path, None, None, "no records (the file is empty or has only blank lines)")
    if split == "file":
        data = _read_bytes(path).decode("utf-8-sig")
        return [data.strip()]
    docs: list[str] = []
    current: list[str] = []
    last = 0
    for n, text in lines:
        if current and n != last + 1:
            docs.append("\n".join(current).strip())
            current = []
        current.append(text)
        last = n
    docs.append("\n".join(current).strip())
    return docs


# --------------------------------------------------------------------------------------------
# Kind detection and summary
# --------------------------------------------------------------------------------------------

KINDS = ("demonstrations", "rankings", "prompts", "pretrain")


def _kind_of(obj) -> str | None:
    if not isinstance(obj, dict):
        return None
    if any(k in obj for k in ("responses", "chosen", "rejected", "summaries")):
        return "rankings"
    if "messages" in obj and not ("prompt" in obj or "response" in obj):
        msgs = obj["messages"]
        last = msgs[-1] if isinstance(msgs, list) and msgs else None
        if isinstance(last, dict) and last.get("role") not in (None, "assistant"):
            return "prompts"  # a conversation to answer
        return "demonstrations"
    if "messages" in obj or ("prompt" in obj and "response" in obj):
        return "demonstrations"
    if "prompt" in obj:
        return "prompts"
    if "text" in obj:
        return "pretrain"
    return None


def detect_kind(path) -> str:
    """Guess the file kind from its first record: one of ``KINDS``. ``.txt`` files are pretrain."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        # Plain text unless it looks like JSONL.
        for n, text in _text_lines(path):
            if not text.lstrip().startswith("{"):
                return "pretrain"
            break
    for n, obj in _records(path):
        if not isinstance(obj, dict):
            raise DataError(path, n, None, f"expected a JSON object, got {_type_name(obj)}")
        kind = _kind_of(obj)
        if kind is None:
            raise DataError(
                path, n, None,
                f"cannot tell the file kind from the fields {sorted(obj)[:8]}: expected 'prompt'+'response' "
                "or 'messages' (demonstrations), 'responses'/'chosen'/'rejected'/'summaries' (rankings), "
                "'prompt' (prompts) or 'text' (pretraining text)",
            )
        return kind
    raise DataError(path, None, None, "no records (the file is empty or has only blank lines)")


def _stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "max": 0, "mean": 0.0, "median": 0.0}
    return {
        "min": min(values),
        "max": max(values),
        "mean": round(statistics.fmean(values), 2),
        "median": float(statistics.median(values)),
    }


def describe(path, kind: str | None = None) -> dict:
    """Validate a whole file and summarise it (for ``instructrl data check FILE``).

    Returns ``{"path", "kind", "count", ...}`` with, per kind: ``prompt_chars`` /
    ``response_chars`` / ``text_chars`` length stats in characters (min, max, mean, median);
    for rankings also ``k_distribution`` ({K: number of records}), ``comparisons`` (total
    number of ranked pairs), ``with_ties`` and ``labelers`` (distinct labeler names);
    for demonstrations ``chat`` (records given as messages).
    """
    kind = kind or detect_kind(path)
    out: dict[str, Any] = {"path": str(path), "kind": kind}
    if kind == "demonstrations":
        recs = read_demonstrations(path)
        out["count"] = len(recs)
        out["chat"] = sum(r.messages is not None for r in recs)
        out["prompt_chars"] = _stats([len(r.prompt) for r in recs])
        out["response_chars"] = _stats([len(r.response) for r in recs])
    elif kind == "rankings":
        recs = read_rankings(path)
        out["count"] = len(recs)
        kdist: dict[int, int] = {}
        for r in recs:
            kdist[len(r.responses)] = kdist.get(len(r.responses), 0) + 1
        out["k_distribution"] = dict(sorted(kdist.items()))
        out["comparisons"] = sum(len(r.comparisons()) for r in recs)
        out["with_ties"] = sum(r.ties is not None for r in recs)
        out["labelers"] = len({r.labeler for r in recs if r.labeler is not None})
        out["prompt_chars"] = _stats([len(r.prompt) for r in recs])
        out["response_chars"] = _stats([len(x) for r in recs for x in r.responses])
    elif kind == "prompts":
        recs = read_prompts(path)
        out["count"] = len(recs)
        out["prompt_chars"] = _stats([len(r.prompt) for r in recs])
    elif kind == "pretrain":
        docs = read_pretrain_texts(path)
        out["count"] = len(docs)
        out["text_chars"] = _stats([len(d) for d in docs])
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_jsonl(path, records) -> None:
    """Write records (dataclasses above, or plain dicts) as UTF-8 JSONL that the readers accept."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            d = r if isinstance(r, dict) else r.to_dict()
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
