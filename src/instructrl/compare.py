"""Comparison collection: sample K responses per prompt and have labelers rank them ([IG] §3.5, App. B).

One loop, top to bottom: for each chunk of prompts, draw K per prompt in [k_min, k_max] (the paper
shows labelers 4 to 9 outputs), sample every prompt K times in one batch at temperature
`cfg.temperature` (paper: 1), drop exact duplicates and empty responses, top up by resampling a
few times, then have a labeler rank the distinct responses best to worst. Output: rankings JSONL
`{"prompt", "responses", "ranking", "labeler"}` that `instructrl rm` reads, written through a temp
file and a rename, so there is never a half-written file.

Labelers: `labelers="world"` uses the embedded world's simulated labelers, each prompt ranked by
one labeler drawn at random from the training pool (or the held-out pool with `pool="heldout"`,
for measuring how an RM generalises to people it never learned from, [IG] §4.1).
`labelers="none"` writes `{"prompt", "responses"}` lines for people to rank: add a `"ranking"`
(best..worst indices) to each line before giving the file to `instructrl rm`.

Where we depart from the paper: duplicates are removed because two identical responses cannot be
ordered (the paper's interface allows ties instead); empty responses are removed because a ranking
file may not hold empty text. A prompt left with fewer than 2 distinct responses after
`MAX_TRIES` resamplings is skipped and counted; one left with fewer than `k_min` keeps what it has.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from instructrl.data import render
from instructrl.data.readers import read_prompts
from instructrl.errors import ConfigError, InstructRLError
from instructrl.models import load_policy, pick_device
from instructrl.rollout import generate
from instructrl.train_utils import Timer, progress, seed_everything

MAX_TRIES = 3  # resampling rounds for prompts short of distinct responses


def distinct_responses(texts: list[str]) -> tuple[list[str], int]:
    """Keep the first copy of each non-empty response (order kept); return (kept, dropped count)."""
    kept, seen = [], set()
    for t in texts:
        if t.strip() and t not in seen:
            kept.append(t)
            seen.add(t)
    return kept, len(texts) - len(kept)


def refuse_non_world_prompts(records, path) -> None:
    """The world's simulated labelers judge only the world's prompts: refuse others in one line."""
    from instructrl.world.judge import parse_prompt

    for r in records:
        try:
            parse_prompt(r.prompt)
        except Exception:
            raise ConfigError(
                f"{path}:{r.line}: not a prompt of the simulated world, so the world's labelers cannot rank its "
                "responses; use --labelers none (unranked responses for people to rank: `instructrl label`)") from None


def run(cfg, model: str, prompts: str, out: str, labelers: str | None = None, world_seed: int = 0,
        pool: str = "train", *, device: str | None = None) -> dict:
    """Sample K responses per prompt from the policy in folder `model`, rank them, write JSONL to `out`.

    Returns statistics (prompts written and skipped, K distribution, duplicates dropped, time).
    """
    timer = Timer()
    labelers = labelers or cfg.labelers
    # 0. Check the arguments and read the prompts before sampling anything.
    out = Path(out)
    _check_args(cfg, labelers, pool, out, prompts)
    records = read_prompts(prompts)
    if cfg.n_prompts > 0:
        records = records[: cfg.n_prompts]
    if labelers == "world":
        refuse_non_world_prompts(records, prompts)
    seed_everything(cfg.seed)
    rng = random.Random(cfg.seed)  # draws K and the labeler per prompt
    label_rng = random.Random(cfg.seed + 1)  # the labelers' own noise
    people = []
    if labelers == "world":
        from instructrl.world.labelers import make_labeler_pool

        train_pool, heldout_pool = make_labeler_pool(world_seed)
        people = train_pool if pool == "train" else heldout_pool

    # 1. The policy (dropout off, eval mode: load_policy), and how its prompts read to it (as it was
    #    trained: its prompt_format.json, unless asked otherwise, which is an error if it differs).
    policy, tok = load_policy(model)
    policy.to(pick_device(device or "auto"))
    max_prompt_len = None
    n_pos = getattr(policy.config, "n_positions", None) or getattr(policy.config, "max_position_embeddings", None)
    if n_pos:
        max_prompt_len = max(1, n_pos - cfg.max_new_tokens)  # leave room for the response
    fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, model, [prompts])
    render.check_matches(fmt, model, "the model")
    render.announce("compare", fmt, tok, records[0])
    # Rendered and fitted once (never cutting into a template's header; a prompt whose template
    # alone does not fit is an error naming its line).
    rendered = [render.prompt_ids(fmt, tok, r.prompt, r.messages, max_prompt_len, r.source, r.line) for r in records]

    stats = {"prompts": len(records), "written": 0, "skipped": 0, "below_k_min": 0, "dropped_duplicates": 0,
             "resampled_prompts": 0, "k_counts": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    bar = progress(len(records), "compare", unit="prompt")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for c0 in range(0, len(records), cfg.batch_size):
                chunk = records[c0:c0 + cfg.batch_size]
                # 2. K per prompt, then every prompt repeated K times: one sampling batch for the chunk.
                ks = [rng.randint(cfg.k_min, cfg.k_max) for _ in chunk]
                # 3. Distinct non-empty responses only (duplicates and empties cannot be ranked).
                responses = _sample_distinct(policy, tok, rendered[c0:c0 + cfg.batch_size], ks, cfg, c0,
                                             max_prompt_len, stats)
                # 4. Rank (or leave unranked) and write one line per prompt.
                for rec, resp in zip(chunk, responses):
                    if len(resp) < 2:
                        stats["skipped"] += 1
                        continue
                    stats["below_k_min"] += len(resp) < cfg.k_min
                    fh.write(json.dumps(_ranked_line(rec, resp, people, rng, label_rng), ensure_ascii=False) + "\n")
                    stats["written"] += 1
                    stats["k_counts"][len(resp)] = stats["k_counts"].get(len(resp), 0) + 1
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        bar.close()
        if stats["written"] == 0:
            raise InstructRLError(
                f"compare: no prompt got 2 distinct non-empty responses ({stats['skipped']} skipped); "
                "raise compare.temperature or max_new_tokens")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    stats["k_counts"] = dict(sorted(stats["k_counts"].items()))
    stats["mean_k"] = sum(k * n for k, n in stats["k_counts"].items()) / stats["written"]
    stats["comparisons"] = sum(k * (k - 1) // 2 * n for k, n in stats["k_counts"].items())
    stats["labelers"] = labelers if labelers == "none" else f"world:{pool}"
    stats["time_s"] = timer.elapsed
    stats["prompt_format"] = fmt.kind
    print(f"compare: {stats['written']} prompts ranked ({stats['comparisons']} comparisons, mean K "
          f"{stats['mean_k']:.2f}), {stats['skipped']} skipped, {stats['dropped_duplicates']} duplicate/empty "
          f"responses dropped, {stats['time_s']:.1f}s -> {out}")
    return stats


def _check_args(cfg, labelers: str, pool: str, out: Path, prompts: str) -> None:
    if labelers not in ("world", "none"):
        raise ConfigError(f"compare.labelers must be 'world' or 'none', got {labelers!r}")
    if pool not in ("train", "heldout"):
        raise ConfigError(f"pool must be 'train' or 'heldout', got {pool!r}")
    if not 2 <= cfg.k_min <= cfg.k_max:
        raise ConfigError(f"compare.k_min/k_max must satisfy 2 <= k_min <= k_max, got {cfg.k_min}, {cfg.k_max}")
    if out.is_dir():
        raise InstructRLError(f"output {out} is a folder; compare writes one JSONL file")
    if out.resolve() == Path(prompts).resolve():
        raise InstructRLError(f"output {out} is the prompts file itself; choose another --out")


def _sample_distinct(policy, tok, chunk_ids: list, ks: list[int], cfg, c0: int, max_prompt_len, stats: dict
                     ) -> list[list[str]]:
    """Up to ``ks[i]`` distinct non-empty responses to each prompt of a chunk: one sampling batch of
    every prompt repeated K times, then a few resampling rounds (at most MAX_TRIES) for prompts
    still short of k_min distinct ones. Counts dropped duplicates and resampled prompts in `stats`."""
    responses: list[list[str]] = [[] for _ in chunk_ids]
    need = list(range(len(chunk_ids)))
    for attempt in range(1 + MAX_TRIES):
        todo = [(i, ks[i] - len(responses[i])) for i in need]
        flat = [chunk_ids[i] for i, n in todo for _ in range(n)]
        texts = generate(policy, tok, flat, cfg.max_new_tokens, cfg.temperature,
                         batch_size=len(flat), seed=cfg.seed * 1_000_003 + c0 * 7 + attempt,
                         max_prompt_len=max_prompt_len)
        pos = 0
        for i, n in todo:
            kept, dropped = distinct_responses(responses[i] + texts[pos:pos + n])
            stats["dropped_duplicates"] += dropped
            responses[i] = kept
            pos += n
        if attempt == 0:
            stats["resampled_prompts"] += sum(len(responses[i]) < cfg.k_min for i in need)
        need = [i for i in need if len(responses[i]) < cfg.k_min]
        if not need:
            break
    return responses


def _ranked_line(rec, resp: list[str], people: list, rng: random.Random, label_rng: random.Random) -> dict:
    """One output line: the prompt, its responses and, with labelers, a random labeler's ranking."""
    line = {"prompt": rec.prompt, "responses": resp}
    if rec.messages is not None:  # a chat prompt: its conversation (prompt = the plain rendering)
        line["messages"] = rec.messages
    if people:
        person = rng.choice(people)
        line["ranking"] = person.rank(rec.prompt, resp, label_rng)
        line["labeler"] = person.id
    return line


__all__ = ["run", "distinct_responses", "MAX_TRIES"]
