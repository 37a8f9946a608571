"""The one prompt renderer: how every stage turns a record into the text a model reads.

SFT, the reward model, ``compare``, PPO, ``eval``, ``generate`` and ``label`` all go through
:func:`resolve` (which format) and :func:`prompt_text` / :func:`response_text` /
:func:`prompt_ids` (what text), so a prompt reads the same to a model in every stage.

Two formats (``prompt_format`` in every stage's config, ``--prompt-format`` on the command line):

- **chat** — the tokenizer's chat template. The prompt is
  ``apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)``, where the
  conversation is a record's ``messages`` (everything before the response) or, for a
  ``{"prompt": s}`` record, ``[{"role": "user", "content": s}]`` (the template adds its default
  system prompt, if it has one). A response is the content followed by the template's
  **end-of-turn** text (found by rendering a probe conversation, e.g. ``<|im_end|>`` for ChatML),
  then EOS — once: when the end-of-turn token *is* the EOS token, it is the EOS.
- **plain** — no template. A ``{"prompt": s}`` record renders as ``plain_template`` with
  ``{prompt}`` replaced by ``s``; a conversation renders as ``"Role: content"`` lines ending in
  ``"Assistant:"`` (:func:`~instructrl.data.readers.render_messages_plain`; an Anthropic HH
  transcript or a summarize-from-feedback prompt stays the text it is). A response follows the
  prompt after a space when neither has whitespace at the joint. The default template is
  ``"User: {prompt}\\nAssistant:"``; the world's is ``"{prompt}"`` (raw: its prompt files already
  read ``"Q: ...\\nA:"`` and its responses start with a space), chosen by its files — a model
  with the world's character tokenizer, or data beside a ``world.json`` — or by
  ``--plain-template``.

``auto`` (the default) is the format recorded in the model folder (``prompt_format.json``, which
every stage writes into its output), else ``chat`` when the tokenizer has a chat template, else
``plain``. A stage whose format differs from the one its input model was trained with is an error
(:func:`check_matches`), not a silent difference.

Truncation never cuts into a template's header: :func:`fit_prompt` drops the oldest messages of a
conversation (never a system message, never the last user message), then the oldest part of the
remaining user content, and refuses the record when even an empty user message does not fit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from instructrl.data.readers import render_messages_plain
from instructrl.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "RECORD_FILE",
    "DEFAULT_PLAIN_TEMPLATE",
    "WORLD_PLAIN_TEMPLATE",
    "PromptFormat",
    "resolve",
    "legacy_format",
    "read_record",
    "world_vocab",
    "check_matches",
    "conversation_of",
    "prompt_of",
    "announce",
    "write_record",
    "prompt_text",
    "response_text",
    "response_ids",
    "prompt_ids",
    "fit_prompt",
]

FORMATS = ("auto", "chat", "plain")
#: Written into every model folder a stage saves: how its prompts were rendered.
RECORD_FILE = "prompt_format.json"
DEFAULT_PLAIN_TEMPLATE = "User: {prompt}\nAssistant:"
WORLD_PLAIN_TEMPLATE = "{prompt}"
_PROBE = "\u2063probe\u2063"  # an assistant message no template changes


@dataclass(frozen=True)
class PromptFormat:
    """A resolved prompt format (see the module docstring). ``kind`` is ``"chat"`` or ``"plain"``.

    ``response_prefix`` / ``end_of_turn``: the text a chat template puts before / after an
    assistant message's content (usually ``""`` / e.g. ``"<|im_end|>"``); empty for plain.
    ``chat_template_sha256`` identifies the template a model was trained with.
    """

    kind: str
    plain_template: str = WORLD_PLAIN_TEMPLATE
    end_of_turn: str = ""
    response_prefix: str = ""
    chat_template_sha256: str | None = None

    @property
    def raw(self) -> bool:
        """Plain and the template is ``{prompt}``: prompts are used exactly as written."""
        return self.kind == "plain" and self.plain_template == WORLD_PLAIN_TEMPLATE

    def describe(self) -> str:
        if self.kind == "chat":
            return f"chat template (end of turn {self.end_of_turn or 'EOS'!r})"
        return f"plain, template {self.plain_template!r}"

    def record(self, tokenizer=None, example=None) -> dict:
        """What ``prompt_format.json`` holds: the format, and how one example record's prompt renders."""
        d = {"format": self.kind, **{k: v for k, v in asdict(self).items() if k != "kind"}}
        if tokenizer is not None and example is not None:
            d["example_prompt"] = prompt_text(self, tokenizer, *prompt_of(example))
        return d


def write_record(folder, fmt: PromptFormat, tokenizer, example=None) -> None:
    """Write ``prompt_format.json`` (the format and how `example`'s prompt renders) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_FILE).write_text(json.dumps(fmt.record(tokenizer, example), indent=2, ensure_ascii=False))


def prompt_of(record) -> tuple[str | None, list | None]:
    """(prompt, conversation before the response) of a Demonstration, Ranking or Prompt record,
    or of a plain string."""
    if isinstance(record, str):
        return record, None
    messages = getattr(record, "messages", None)
    if messages is not None and hasattr(record, "response"):  # a demonstration's messages end with its response
        messages = messages[:-1]
    return record.prompt, messages


def announce(stage: str, fmt: PromptFormat, tokenizer, example) -> None:
    """Log, once per stage, the format and how the first record's prompt reads to the model."""
    text = prompt_text(fmt, tokenizer, *prompt_of(example))
    shown = text if len(text) <= 300 else text[:150] + " ... " + text[-150:]
    log.info("%s: prompts rendered as %s; the first reads %r", stage, fmt.describe(), shown)


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] if text else None


def _has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _chat_turn_edges(tokenizer) -> tuple[str, str]:
    """(text before, text after) an assistant message's content in the tokenizer's chat template.

    Renders ``[user, assistant=PROBE]`` and compares it with the generation prompt of ``[user]``;
    a template that does not extend the generation prompt that way gets ("", "") and a warning.
    """
    user = [{"role": "user", "content": "hi"}]
    try:
        gen = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": _PROBE}], tokenize=False)
    except Exception as e:  # a template that needs other roles, tools...: still usable for prompts
        log.warning("the chat template could not render an assistant turn (%s); responses end with EOS only", e)
        return "", ""
    at = full.find(_PROBE)
    if not full.startswith(gen) or at < len(gen):
        log.warning("the chat template's full conversation does not extend its generation prompt; "
                    "responses end with EOS only")
        return "", ""
    after = full[at + len(_PROBE):]
    return full[len(gen):at], after.rstrip()


def world_vocab(vocab: dict) -> bool:
    """A vocabulary of the world's tokenizers (instructrl.tokenizer): the character one, or its
    byte-level BPE with ``<pad>`` = 0 and ``<eos>`` = 1 — a world model, whose prompts are raw."""
    from instructrl.tokenizer import CHARSET, EOS, PAD

    if not isinstance(vocab, dict):
        return False
    if len(vocab) <= 110 and {PAD, EOS, *CHARSET} <= set(vocab):
        return True
    return len(vocab) <= 8192 and vocab.get(PAD) == 0 and vocab.get(EOS) == 1


def _world_tokenizer(tokenizer) -> bool:
    if _has_template(tokenizer):
        return False
    try:
        return world_vocab(tokenizer.get_vocab())
    except Exception:
        return False


def _world_data(paths) -> bool:
    """Some input file lies in a folder the world built (beside its world.json)."""
    flat = []
    for p in paths or ():
        flat.extend([p] if isinstance(p, (str, Path)) or p is None else p)
    return any(q and (Path(q).parent / "world.json").is_file() for q in flat)


def read_record(folder) -> dict | None:
    """The ``prompt_format.json`` of a model folder (None when it has none)."""
    if not folder:
        return None
    p = Path(folder) / RECORD_FILE
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("format") in ("chat", "plain") else None


def resolve(tokenizer, requested: str = "auto", plain_template: str = "", folder=None, data=None) -> PromptFormat:
    """The prompt format a stage uses (module docstring): ``requested`` (auto/chat/plain) for the
    model in ``folder`` with this ``tokenizer``; ``data``: input files (a ``world.json`` beside one
    selects the world's raw plain template)."""
    if requested not in FORMATS:
        raise ConfigError(f"prompt_format must be one of {', '.join(FORMATS)}, got {requested!r}")
    rec = read_record(folder)
    kind = requested
    if kind == "auto":
        kind = rec["format"] if rec else ("chat" if _has_template(tokenizer) else "plain")
    if kind == "chat":
        if not _has_template(tokenizer):
            raise ConfigError(f"prompt_format=chat, but the tokenizer of {folder or 'the model'} has no chat template; "
                              "use --prompt-format plain (or add a chat_template to tokenizer_config.json)")
        before, after = _chat_turn_edges(tokenizer)
        return PromptFormat("chat", plain_template=plain_template or DEFAULT_PLAIN_TEMPLATE, end_of_turn=after,
                            response_prefix=before, chat_template_sha256=_sha(tokenizer.chat_template))
    if plain_template:
        if "{prompt}" not in plain_template:
            raise ConfigError(f"plain_template must contain '{{prompt}}', got {plain_template!r}")
        template = plain_template
    elif rec and rec["format"] == "plain" and rec.get("plain_template"):
        template = rec["plain_template"]
    elif _world_tokenizer(tokenizer) or _world_data(data):
        template = WORLD_PLAIN_TEMPLATE
    else:
        template = DEFAULT_PLAIN_TEMPLATE
    return PromptFormat("plain", plain_template=template)


def legacy_format(tokenizer, messages) -> PromptFormat:
    """The format of the low-level encoders when no format is given: the chat template for chat
    records (when there is one), else the prompt exactly as written."""
    if messages is not None and _has_template(tokenizer):
        before, after = _chat_turn_edges(tokenizer)
        return PromptFormat("chat", end_of_turn=after, response_prefix=before,
                            chat_template_sha256=_sha(tokenizer.chat_template))
    return PromptFormat("plain", plain_template=WORLD_PLAIN_TEMPLATE)


def _same(rec: dict, fmt: PromptFormat) -> bool:
    if rec.get("format") != fmt.kind:
        return False
    if fmt.kind == "chat":
        return rec.get("chat_template_sha256") in (None, fmt.chat_template_sha256)
    return rec.get("plain_template", fmt.plain_template) == fmt.plain_template


def _rec_text(rec: dict) -> str:
    if rec.get("format") == "chat":
        return f"the chat template (sha256 {rec.get('chat_template_sha256')})"
    return f"plain, template {rec.get('plain_template')!r}"


def check_matches(fmt: PromptFormat, folder, what: str) -> None:
    """Refuse to go on when the model in ``folder`` was trained with prompts rendered otherwise."""
    rec = read_record(folder)
    if rec is None or _same(rec, fmt):
        return
    if rec.get("format") == fmt.kind == "chat":
        hint = "its tokenizer's chat template changed since; restore it, or retrain"
    else:
        flag = f"--prompt-format {rec['format']}" + (
            f" --plain-template {json.dumps(rec.get('plain_template'))}" if rec.get("format") == "plain" else "")
        hint = f"run with {flag} (or leave --prompt-format auto), or retrain {what} with this format"
    raise ConfigError(f"{what} {folder} was trained with prompts rendered as {_rec_text(rec)}, but this run renders "
                      f"them as {fmt.describe()}; {hint}")


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def conversation_of(prompt: str, messages: list | None) -> list[dict]:
    """The chat conversation of a record: its messages, or the prompt as one user message."""
    return list(messages) if messages is not None else [{"role": "user", "content": prompt}]


def prompt_text(fmt: PromptFormat, tokenizer, prompt: str | None, messages: list | None = None) -> str:
    """The prompt a model reads (module docstring). ``messages``: the conversation before the
    response when the record was chat-formatted (``prompt`` is then its plain rendering)."""
    if fmt.kind == "chat":
        return tokenizer.apply_chat_template(conversation_of(prompt, messages), tokenize=False,
                                             add_generation_prompt=True)
    if messages is not None:
        return prompt if prompt is not None else render_messages_plain(messages)
    return fmt.plain_template.replace("{prompt}", prompt)


def response_text(fmt: PromptFormat, rendered_prompt: str, response: str, messages: list | None = None) -> str:
    """The text of a response after its rendered prompt (EOS not included); ``messages``: the
    conversation before it, when the record was chat-formatted."""
    if fmt.kind == "chat":
        return fmt.response_prefix + response.lstrip() + fmt.end_of_turn
    if fmt.raw and messages is None:
        return response
    if rendered_prompt[-1:].isspace() or response[:1].isspace():
        return response
    return " " + response


def _tokens(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def response_ids(fmt: PromptFormat, tokenizer, rendered_prompt: str, response: str,
                 messages: list | None = None) -> list[int]:
    """Tokens of a response followed by EOS (once: an end-of-turn token that is the EOS is it)."""
    ids = _tokens(tokenizer, response_text(fmt, rendered_prompt, response, messages))
    eos = tokenizer.eos_token_id
    if not (fmt.kind == "chat" and ids and ids[-1] == eos):
        ids.append(eos)
    return ids


def _where(path, line) -> str:
    return f"{path}:{line}" if path is not None else "<data>"


def _cut_left(render, content: str, budget: int, tokenizer) -> tuple[list[int], int] | None:
    """Smallest cut c (characters dropped from the left of `content`) whose rendering fits `budget`
    tokens: (ids, c); None when even the empty content does not fit."""
    ids = _tokens(tokenizer, render(""))
    if len(ids) > budget:
        return None
    lo, hi = 0, len(content)  # render(content[hi:]) fits
    best = ids
    while lo < hi:
        mid = (lo + hi) // 2
        ids = _tokens(tokenizer, render(content[mid:]))
        if len(ids) <= budget:
            hi, best = mid, ids
        else:
            lo = mid + 1
    if hi == len(content):
        return best, hi
    # Start at a word: move the cut to the next whitespace when one is near (the rendering only shrinks).
    space = next((i for i in range(hi, min(len(content), hi + 40)) if content[i].isspace()), None)
    if space is not None and hi > 0 and not content[hi - 1].isspace():
        hi = space + 1
    return _tokens(tokenizer, render(content[hi:])), hi


def fit_prompt(fmt: PromptFormat, tokenizer, prompt: str | None, messages: list | None, budget: int,
               path=None, line: int | None = None, warn: bool = True) -> list[int]:
    """Prompt tokens shortened to at most ``budget`` without cutting into a template's header.

    A raw plain prompt (and a transcript kept as written, such as HH) keeps its last ``budget``
    tokens. A conversation drops its oldest messages (never a system message nor the last one),
    then the oldest characters of the message that remains; a single prompt loses its oldest
    characters inside the template. A DataError when even an empty message does not fit.
    """
    say = log.warning if warn else log.debug
    ids = _tokens(tokenizer, prompt_text(fmt, tokenizer, prompt, messages))
    if len(ids) <= budget:
        return ids
    as_written = fmt.raw or (fmt.kind == "plain" and messages is not None and prompt is not None
                             and prompt != render_messages_plain(messages))
    if as_written:
        say("%s: prompt truncated from the left, %d -> %d tokens", _where(path, line), len(ids), budget)
        return ids[len(ids) - budget:]
    if fmt.kind == "chat" or messages is not None:
        def render_conv(msgs):
            return prompt_text(fmt, tokenizer, None if fmt.kind == "chat" else render_messages_plain(msgs), msgs)

        conv = conversation_of(prompt, messages)
        system = [m for m in conv[:1] if m["role"] == "system"]
        rest = conv[len(system):]
        while len(rest) > 1:
            rest = rest[1:]
            while len(rest) > 1 and rest[0]["role"] == "assistant":  # a conversation starts with the user
                rest = rest[1:]
            ids = _tokens(tokenizer, render_conv(system + rest))
            if len(ids) <= budget:
                say("%s: prompt too long: dropped the %d oldest message(s) to fit %d tokens",
                    _where(path, line), len(conv) - len(system) - len(rest), budget)
                return ids
        dropped = len(conv) - len(system) - len(rest)
        last = dict(rest[0])
        content = last["content"]

        def render(text: str) -> str:
            return render_conv(system + [{**last, "content": text}])
    else:
        dropped = 0
        content = prompt

        def render(text: str) -> str:
            return prompt_text(fmt, tokenizer, text, None)

    cut = _cut_left(render, content, budget, tokenizer)
    if cut is None:
        head = len(_tokens(tokenizer, render("")))
        raise DataError(path, line, "prompt",
                        f"the prompt's template alone ({head} tokens: system prompt and turn headers) leaves no room "
                        f"within {budget} tokens; raise max_len (or shorten max_new_tokens / the system prompt)")
    ids, n_chars = cut
    say("%s: prompt too long: %sdropped the first %d characters of the user content to fit %d tokens",
        _where(path, line), f"dropped the {dropped} oldest message(s) and " if dropped else "", n_chars, budget)
    return ids


def prompt_ids(fmt: PromptFormat, tokenizer, prompt: str | None, messages: list | None = None,
               max_len: int | None = None, path=None, line: int | None = None) -> list[int]:
    """Tokens of a rendered prompt for generation; longer than ``max_len``: :func:`fit_prompt`."""
    if max_len is None:
        return _tokens(tokenizer, prompt_text(fmt, tokenizer, prompt, messages))
    return fit_prompt(fmt, tokenizer, prompt, messages, max_len, path, line)
