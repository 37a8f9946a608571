"""A chat model through every stage: one prompt renderer (instructrl.data.render) for all of them.

The model is a tiny Llama-config chat model as a hub chat model comes: a ChatML chat template with a
default system prompt and pad = EOS = <|im_end|> in its tokenizer (tests/tiny_hf.chat_llama_folder).
A spy on the Llama backbone's forward checks every sequence any stage feeds the model: each must
start with the template's header and hold an assistant turn, so a stage that feeds the chat model
an untemplated prompt fails the test; the rendered texts it saw are asserted exactly, per stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instructrl.cli import main
from instructrl.data import render
from instructrl.data.readers import read_prompts
from instructrl.errors import ConfigError, DataError
from instructrl.models import load_tokenizer
from tiny_hf import char_gpt2_folder, chat_llama_folder, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples" / "chat"
SYS = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def chatml(user: str, system: str | None = None) -> str:
    """The generation prompt the ChatML template renders for one user message."""
    head = SYS if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return chat_llama_folder(tmp_path_factory.mktemp("chat") / "base")


class Spy:
    """Records the text of every sequence the Llama backbone reads; refuses an untemplated one."""

    def __init__(self, tok):
        self.tok = tok
        self.start = tok.convert_tokens_to_ids("<|im_start|>")
        self.assistant = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        self.texts: list[str] = []

    def check(self, input_ids, attention_mask):
        if input_ids is None or input_ids.shape[1] == 1:  # a decoding step after the prompt: cached
            return
        mask = attention_mask.bool() if attention_mask is not None and attention_mask.dim() == 2 else None
        for b in range(input_ids.shape[0]):
            ids = input_ids[b][mask[b]] if mask is not None else input_ids[b]
            ids = ids.tolist()
            text = self.tok.decode(ids)
            assert ids[0] == self.start, f"a chat model was fed an untemplated sequence: {text[:120]!r}"
            n = len(self.assistant)
            assert any(ids[i:i + n] == self.assistant for i in range(len(ids) - n + 1)), \
                f"a chat model was fed a sequence without an assistant turn: {text[:160]!r}"
            self.texts.append(text)

    def take(self) -> list[str]:
        out, self.texts = self.texts, []
        return out


@pytest.fixture()
def spy(base, monkeypatch):
    from transformers.models.llama import modeling_llama

    s = Spy(load_tokenizer(base))
    orig = modeling_llama.LlamaModel.forward

    def forward(self, input_ids=None, attention_mask=None, *args, **kwargs):
        s.check(input_ids, attention_mask)
        return orig(self, input_ids, attention_mask, *args, **kwargs)

    monkeypatch.setattr(modeling_llama.LlamaModel, "forward", forward)
    return s


def _run(*argv) -> int:
    rc = main([str(a) for a in argv])
    assert rc == 0, f"instructrl {argv[0]} failed"
    return rc


NO_LOGS = ["--set", "report_to=[none]", "--set", "checkpoint_every=0"]


def test_chat_model_through_every_stage(base, spy, tmp_path, capsys):
    # SFT: {prompt, response} and {messages} demonstrations through the chat template; the response
    # ends with the template's end-of-turn token, which is the EOS here (pad = eos in the folder).
    _run("sft", "--model", base, "--data", EX / "demos.jsonl", "--val-data", EX / "demos_val.jsonl",
         "--out", tmp_path / "sft", "--set", "batch_size=6", "--set", "max_len=256", *NO_LOGS)
    seen = spy.take()
    assert chatml("What is the capital of France?") + "The capital of France is Paris.<|im_end|>" in seen
    assert (chatml("What is the largest planet?", system="You are a concise assistant.")
            + "Jupiter is the largest planet in the solar system.<|im_end|>") in seen
    multi = (SYS + "<|im_start|>user\nHi! Can you help me with a recipe?<|im_end|>\n<|im_start|>assistant\n"
             "Of course. What would you like to cook?<|im_end|>\n<|im_start|>user\nSomething quick with pasta."
             "<|im_end|>\n<|im_start|>assistant\nTry garlic pasta")
    assert any(t.startswith(multi) for t in seen)
    record = json.loads((tmp_path / "sft" / "prompt_format.json").read_text())
    assert record["format"] == "chat" and record["end_of_turn"] == "<|im_end|>"
    assert record["example_prompt"] == chatml("What is the capital of France?")
    cfg = (tmp_path / "sft" / "config.yaml").read_text()
    assert "prompt_format: chat" in cfg and "lr: 2.0e-05" in cfg  # the 'real' preset's SFT lr

    # RM: K-wise {prompt}, K-wise {messages}, pairwise, an HH transcript and chat chosen/rejected.
    _run("rm", "--model", tmp_path / "sft", "--data", EX / "prefs.jsonl", "--demonstrations", EX / "demos.jsonl",
         "--out", tmp_path / "rm", "--set", "batch_size=4", "--set", "max_len=256", "--set", "val_fraction=0.2",
         *NO_LOGS)
    seen = spy.take()
    assert chatml("What is the capital of Italy?") + "The capital of Italy is Rome.<|im_end|>" in seen
    assert chatml("Is it safe to look at the sun?") + "No. Looking directly at the sun can damage your eyes; " \
        "use certified eclipse glasses.<|im_end|>" in seen
    assert chatml("Name a primary color.", system="You are a concise assistant.") + "Red.<|im_end|>" in seen
    assert chatml("What is the opposite of hot?") + "Cold.<|im_end|>" in seen

    # compare (no world labelers: unranked tasks), with {prompt} and {messages} prompts.
    _run("compare", "--model", tmp_path / "sft", "--prompts", EX / "prompts.jsonl", "--out", tmp_path / "tasks.jsonl",
         "--set", "max_new_tokens=6", "--set", "k_min=2", "--set", "k_max=2", "--set", "temperature=1.5")
    seen = spy.take()
    assert any(t.startswith(chatml("What is the capital of Germany?")) for t in seen)
    assert any(t.startswith(chatml("What is a noun?", system="You are a friendly tutor.")) for t in seen)
    tasks = [json.loads(x) for x in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    assert all("ranking" not in t for t in tasks)
    chat_task = next(t for t in tasks if "messages" in t)
    assert chat_task["prompt"].startswith("System: You are a friendly tutor.") or "Not very." in chat_task["prompt"]

    # PPO: prompts rendered as SFT rendered them; samples.jsonl holds a few rollouts per update.
    _run("ppo", "--policy", tmp_path / "sft", "--reward", tmp_path / "rm", "--prompts", EX / "prompts.jsonl",
         "--out", tmp_path / "ppo", "--set", "total_episodes=8", "--set", "batch_size=4", "--set", "minibatch_size=2",
         "--set", "max_new_tokens=6", "--set", "samples_per_update=2", *NO_LOGS[:2])
    seen = spy.take()
    prompts = [r.prompt for r in read_prompts(EX / "prompts.jsonl")]
    assert any(t.startswith(chatml("Give me two tips for staying focused.")) for t in seen) or \
        any(t.startswith(chatml(p)) for t in seen for p in prompts[:8])
    samples = [json.loads(x) for x in (tmp_path / "ppo" / "samples.jsonl").read_text().splitlines()]
    assert [s["update"] for s in samples] == [1, 1, 2, 2]
    assert all(s["prompt"] in prompts and isinstance(s["response"], str) for s in samples)
    ppo_cfg = json.loads((tmp_path / "ppo" / "config.json").read_text())
    assert ppo_cfg["use_cache"] is True  # saved for generation
    gen = json.loads((tmp_path / "ppo" / "generation_config.json").read_text())
    tok = load_tokenizer(tmp_path / "ppo")
    assert gen["pad_token_id"] == tok.pad_token_id != tok.eos_token_id
    assert json.loads((tmp_path / "ppo" / "prompt_format.json").read_text())["format"] == "chat"
    assert "warmup_fraction: 0.1" in (tmp_path / "ppo" / "config.yaml").read_text()

    # eval with the RM as judge, and with the chat model as a pairwise LM judge.
    capsys.readouterr()
    _run("eval", "--models", f"sft={tmp_path / 'sft'}", f"ppo={tmp_path / 'ppo'}", "--reference", tmp_path / "sft",
         "--prompts", EX / "eval_prompts.jsonl", "--judge", tmp_path / "rm", "--out", tmp_path / "eval",
         "--set", "max_new_tokens=6", "--set", "bootstrap=10")
    seen = spy.take()
    assert any(t.startswith(chatml("What is the capital of Spain?")) for t in seen)
    assert any(t.startswith(chatml("What is the tallest animal?", system="Answer briefly.")) for t in seen)
    m = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert 0 <= m["winrate.ppo_vs_sft"] <= 1 and len(m["winrate_ci95.ppo_vs_sft"]) == 2
    assert {"length.ppo", "empty.ppo", "eos.ppo", "kl.ppo", "kl_k3.ppo"} <= set(m) and m["kl_k3.ppo"] >= 0
    assert json.loads((tmp_path / "eval" / "samples.json").read_text())["judge"] == "reward_model"
    _run("eval", "--models", f"sft={tmp_path / 'sft'}", f"ppo={tmp_path / 'ppo'}", "--prompts",
         EX / "eval_prompts.jsonl", "--judge", tmp_path / "sft", "--out", tmp_path / "eval_lm",
         "--set", "max_new_tokens=6", "--set", "bootstrap=10")
    seen = spy.take()
    assert any("Which response is better?" in t and t.startswith(SYS + "<|im_start|>user\nYou are comparing")
               for t in seen)
    m = json.loads((tmp_path / "eval_lm" / "eval.json").read_text())
    assert 0 <= m["winrate.ppo_vs_sft"] <= 1
    assert json.loads((tmp_path / "eval_lm" / "samples.json").read_text())["judge"] == "lm_judge"

    # generate: the prompt through the template.
    capsys.readouterr()
    _run("generate", "--model", tmp_path / "ppo", "--prompt", "What is the capital of France?", "--temperature", "0",
         "--max-new-tokens", "4", "--show-prompt")
    assert spy.take()[0].startswith(chatml("What is the capital of France?"))
    assert repr(chatml("What is the capital of France?")) in capsys.readouterr().err

    # A run asked to render otherwise than SFT did is an error, not a silent difference.
    rc = main(["ppo", "--policy", str(tmp_path / "sft"), "--reward", str(tmp_path / "rm"), "--prompts",
               str(EX / "prompts.jsonl"), "--out", str(tmp_path / "ppo_plain"), "--prompt-format", "plain"])
    err = capsys.readouterr().err
    assert rc == 2 and "was trained with prompts rendered as the chat template" in err and "Traceback" not in err


def test_truncation_drops_the_oldest_messages_never_the_header(base):
    tok = load_tokenizer(base)
    fmt = render.resolve(tok)
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "old " * 60},
            {"role": "assistant", "content": "reply " * 60}, {"role": "user", "content": "the question"}]
    ids = render.fit_prompt(fmt, tok, None, conv, 40)
    assert tok.decode(ids) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nthe question<|im_end|>\n"
                               "<|im_start|>assistant\n")
    ids = render.fit_prompt(fmt, tok, "word " * 200, None, 40)  # one long prompt: its oldest words go
    text = tok.decode(ids)
    assert len(ids) <= 40 and text.startswith(SYS + "<|im_start|>user\nword") and text.endswith("<|im_start|>assistant\n")
    with pytest.raises(DataError, match="template alone"):
        render.fit_prompt(fmt, tok, "hello", None, 10)


def test_plain_formats_and_the_world(tmp_path):
    world_tok = load_tokenizer(char_gpt2_folder(tmp_path / "char"))
    fmt = render.resolve(world_tok)
    assert fmt.kind == "plain" and fmt.raw  # the world's files hold 'Q: ...\nA:' prompts: used as written
    assert render.prompt_text(fmt, world_tok, "Q: hi\nA:") == "Q: hi\nA:"
    assert render.response_text(fmt, "Q: hi\nA:", " hello") == " hello"
    plain = render.PromptFormat("plain", plain_template=render.DEFAULT_PLAIN_TEMPLATE)
    text = render.prompt_text(plain, world_tok, "How can I save money?")
    assert text == "User: How can I save money?\nAssistant:"
    assert render.response_text(plain, text, "Plan your meals.") == " Plan your meals."  # not glued
    fmt = render.resolve(world_tok, "plain", "Q: {prompt}\nA:")
    assert render.prompt_text(fmt, world_tok, "hi") == "Q: hi\nA:"
    with pytest.raises(ConfigError, match="no chat template"):
        render.resolve(world_tok, "chat")
    with pytest.raises(ConfigError, match="must contain"):
        render.resolve(world_tok, "plain", "no placeholder")


def test_compare_refuses_world_labelers_on_other_prompts(base, tmp_path, capsys):
    rc = main(["compare", "--model", str(base), "--prompts", str(EX / "prompts.jsonl"), "--out",
               str(tmp_path / "c.jsonl"), "--labelers", "world"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) <= 2 and err[-1].startswith("error: ") and "--labelers none" in err[-1]
    assert not (tmp_path / "c.jsonl").exists()


def test_eval_without_a_judge_says_so_and_reports_the_rest(base, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        rc = main(["eval", "--models", f"a={base}", f"b={base}", "--reference", str(base), "--prompts",
                   str(EX / "eval_prompts.jsonl"), "--out", str(tmp_path / "ev"), "--set", "max_new_tokens=4"])
    assert rc == 0
    msgs = [r.getMessage() for r in caplog.records if "no judge" in r.getMessage()]
    assert len(msgs) == 1 and "length, empty-answer rate, EOS rate and KL" in msgs[0]
    m = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert not any(k.startswith("winrate") for k in m)
    assert {"length.a", "empty.a", "eos.a", "kl.b", "kl_k3.b"} <= set(m)


def test_progress_is_one_line_logs_under_a_pipe(tmp_path):
    base = char_gpt2_folder(tmp_path / "base")
    demos = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"Q: {i}\nA:", "response": f" {i}"} for i in range(12)])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "INSTRUCTRL_LOG_EVERY": "2"}
    env.pop("INSTRUCTRL_PROGRESS", None)
    p = subprocess.run([sys.executable, "-m", "instructrl.cli", "sft", "--model", str(base), "--data", str(demos),
                        "--out", str(tmp_path / "sft"), "--set", "batch_size=2", "--set", "epochs=1",
                        "--set", "report_to=[none]"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.startswith("sft ") and "/6 (" in x]
    assert [x.split()[1] for x in lines] == ["1/6", "3/6", "5/6", "6/6"]
    assert all("loss=" in x and "lr=" in x and "step/s" in x for x in lines) and "eta" in lines[0]
    assert "\r" not in p.stderr  # no tqdm redraws in a log file


def test_missing_tokenizer_files_are_named(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from instructrl.errors import ModelFolderError
    from instructrl.models import load_policy

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "m")
    with pytest.raises(ModelFolderError, match="no tokenizer files"):
        load_policy(tmp_path / "m")


def test_hh_transcripts_become_messages():
    from instructrl.data.readers import hh_messages

    assert hh_messages("\n\nHuman: hi\n\nAssistant: yo\n\nHuman: and?\n\nAssistant:") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "and?"}]
    assert hh_messages("Some text\n\nAssistant:") is None  # not a clean transcript: used as written


def test_k3_is_never_negative_and_matches_k1_in_expectation():
    from instructrl.losses import kl_k1, kl_k3

    g = torch.Generator().manual_seed(0)
    logits_p, logits_q = torch.randn(8, generator=g), torch.randn(8, generator=g)
    p, q = torch.log_softmax(logits_p, 0), torch.log_softmax(logits_q, 0)
    exact = float((p.exp() * (p - q)).sum())
    x = torch.multinomial(p.exp(), 200000, replacement=True, generator=g)
    k1, k3 = kl_k1(p[x], q[x]), kl_k3(p[x], q[x])
    assert (k3 >= 0).all()
    assert abs(float(k1.mean()) - exact) < 0.02 and abs(float(k3.mean()) - exact) < 0.02


def test_the_spy_catches_an_untemplated_prompt(base, spy):
    """The guard of test_chat_model_through_every_stage can fail: a raw prompt trips it."""
    from instructrl.models import load_policy
    from instructrl.rollout import generate

    model, tok = load_policy(base)
    with pytest.raises(AssertionError, match="untemplated"):
        generate(model, tok, ["What is the capital of France?"], max_new_tokens=2)
    generate(model, tok, [chatml("What is the capital of France?")], max_new_tokens=2)
    assert spy.take() == [chatml("What is the capital of France?")]


def test_a_max_len_beyond_the_context_is_said(base, tmp_path, caplog):
    import logging

    from instructrl import sft
    from instructrl.config import SFTConfig

    with caplog.at_level(logging.WARNING):
        sft.train_sft(SFTConfig(epochs=1, batch_size=8, max_len=100000, report_to=["none"], checkpoint_every=0),
                      str(base), str(EX / "demos.jsonl"), str(tmp_path / "sft"))
    assert any("max_len 100000 exceeds the model's context of 256 tokens" in r.getMessage() for r in caplog.records)
