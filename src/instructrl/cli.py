"""`instructrl`: one entry point, one function per subcommand.

Every stage command reads its config from defaults <- `--preset` <- `--config FILE` <-
`--set key=value` (repeatable), and `--help` lists every config field with its default and help.
User errors (bad data, bad config, bad model folder) print one clear message and exit 2, with no
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from pathlib import Path

from instructrl import config as C
from instructrl.errors import InstructRLError


REAL_PRESET = "real"


def _fields_epilog(cls, section: str | None = None, preset: str | None = None, real: bool = False) -> str:
    """The config fields with their help; `preset`: show that preset's values (what runs without --preset);
    `real`: also show the 'real' preset's value where it differs (a stage's default for a model that is
    not the world's)."""
    rows = C.describe_fields(cls, obj=C.load_config(cls, preset=preset) if preset else None)
    where = f"; values of the '{preset}' preset, used when no --preset is given" if preset else ""
    real_values = {}
    if real:
        sec = (section or "").split(" ")[0]
        real_values = dict((n, d) for n, d, _ in C.describe_fields(cls, obj=C.load_config(
            cls, preset=REAL_PRESET, section=sec)))
        where = ("; '= X' is the default for a model of the simulated world, '[real: Y]' the default for any "
                 "other model (the 'real' preset, used when no --preset is given and the model is not the world's)")
    lines = [f"config fields (override with --set KEY=VALUE{'; preset section: ' + section if section else ''}{where}):"]
    for name, default, help_ in rows:
        head = f"  {name}" + (f" = {default}" if default != "" else "")
        if real_values.get(name, default) != default:
            head += f"  [real: {real_values[name]}]"
        lines.append(head)
        lines.extend(textwrap.wrap(help_, width=88, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)


def _add_config_args(p: argparse.ArgumentParser, presets: bool = True) -> None:
    g = p.add_argument_group("configuration")
    if presets:
        g.add_argument("--preset", default=None, help="Start from a preset in configs/ (quick, default, paper).")
    g.add_argument("--config", default=None, metavar="FILE", help="YAML file with config fields (applied after the preset).")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Override one config field (repeatable), e.g. --set lr=1e-4.")


def _stage_parser(sub, name: str, cls, help_: str, section: str | None = None, preset: str | None = None,
                  prompts: bool = False):
    p = sub.add_parser(name, help=help_, description=help_, epilog=_fields_epilog(cls, section, preset, real=prompts),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(p)
    if prompts:  # a stage that renders prompts (instructrl.data.render)
        g = p.add_argument_group("prompt format")
        g.add_argument("--prompt-format", choices=["auto", "chat", "plain"], default=None,
                       help="How prompts are rendered: the chat template, the plain format, or auto (the input "
                            "model's recorded format, else chat when the tokenizer has a template, else plain). "
                            "Same as --set prompt_format=...; recorded in config.yaml.")
        g.add_argument("--plain-template", default=None, metavar="TEXT",
                       help="The plain format of a {prompt} record, e.g. 'Q: {prompt}\nA:' (same as --set plain_template=...).")
    return p


def _situation_preset(args, model) -> str | None:
    """The preset a stage starts from: --preset, else 'real' for a model that is not the world's
    (the world's models keep the dataclass defaults, the world's own)."""
    if getattr(args, "preset", None) or not model:
        return getattr(args, "preset", None)
    if _is_world_model(model):
        return None
    if Path(model).is_dir():  # (a missing folder is reported by the stage)
        print(f"{args.command}: {model} is not a model of the simulated world: using the '{REAL_PRESET}' preset's "
              f"defaults (see `instructrl {args.command} --help`; --preset to choose another)", file=sys.stderr)
    return REAL_PRESET


def _is_world_model(folder) -> bool:
    """True for a folder with one of the world's tokenizers (render.world_vocab): its vocabulary,
    read from tokenizer.json without loading anything."""
    from instructrl.data.render import world_vocab

    try:
        tok = json.loads((Path(folder) / "tokenizer.json").read_text())
    except (OSError, ValueError):
        return False
    vocab = (tok.get("model") or {}).get("vocab") if isinstance(tok, dict) else None
    added = {t.get("content"): t.get("id") for t in tok.get("added_tokens", []) if isinstance(t, dict)} \
        if isinstance(tok, dict) else {}
    return isinstance(vocab, dict) and world_vocab({**vocab, **added})


def _load(cls, args, section: str | None, model=None):
    preset = _situation_preset(args, model) if model is not None else getattr(args, "preset", None)
    cfg = C.load_config(cls, args.config, args.overrides, preset=preset, section=section)
    if getattr(args, "prompt_format", None):
        cfg = C.apply_overrides(cfg, [f"prompt_format={args.prompt_format}"])
    if getattr(args, "plain_template", None) is not None:
        cfg.plain_template = args.plain_template
        C.validate(cfg)
    return cfg


# ------------------------------------------------------------------------------------------------
# Subcommands
# ------------------------------------------------------------------------------------------------


def cmd_pipeline(args) -> int:
    from instructrl import pipeline

    cfg = C.load_config(C.PipelineConfig, args.config, args.overrides, preset=args.preset or "default")
    pipeline.run(cfg, out=args.out, preset_name=args.preset or "default", overwrite=args.overwrite)
    return 0


def cmd_world_build(args) -> int:
    from instructrl.models import atomic_folder
    from instructrl.run import guard_output
    from instructrl.world.build import build_world

    cfg = _load(C.WorldConfig, args, "world")
    if args.seed is not None:
        cfg.seed = args.seed
        C.validate(cfg)
    guard_output(args.out, "world", "", args.overwrite)  # a user's files are never silently overwritten
    summary = {}

    def fill(tmp):  # the whole world in a temporary folder, swapped into place once complete
        summary.update(build_world(tmp, seed=cfg.seed, n_sft=cfg.n_sft, n_sft_val=cfg.n_sft_val, n_rm=cfg.n_rm,
                                   n_ppo=cfg.n_ppo, n_eval=cfg.n_eval, corpus_chars=cfg.corpus_chars,
                                   n_benchmark=cfg.n_benchmark))
        C.save_config(cfg, tmp)

    try:
        atomic_folder(args.out, fill)
    except OSError as e:
        from instructrl.run import DiskFullError, is_disk_full

        if is_disk_full(e):
            raise DiskFullError(args.out) from None
        raise
    if isinstance(summary.get("paths"), dict):
        summary["paths"] = {k: str(Path(args.out) / Path(v).name) for k, v in summary["paths"].items()}
    print(json.dumps(summary, indent=2)[:4000])
    print(f"world written to {args.out}")
    return 0


def cmd_pretrain(args) -> int:
    from instructrl import pretrain

    section = "base_large" if args.size == "large" else "base_small"
    cfg = _load(C.PretrainConfig, args, section)
    data, val = args.data, args.val_data
    if args.world:
        data = data or str(Path(args.world) / "pretrain.jsonl")
        val = val or str(Path(args.world) / "pretrain_val.jsonl")
    if not data:
        raise InstructRLError("give --data FILE (pretraining text) or --world DIR (from `instructrl world build`)")
    m = pretrain.pretrain_base(cfg, data, args.out, val_data=val, overwrite=args.overwrite, resume=args.resume)
    print(json.dumps(m, indent=2))
    return 0


def cmd_sft(args) -> int:
    from instructrl import sft

    cfg = _load(C.SFTConfig, args, "sft", model=args.model)
    if args.select_by_rm:
        cfg.select_by, cfg.rm_dir = "rm", args.select_by_rm
    m = sft.train_sft(cfg, model=args.model, data=args.data, out=args.out, val_data=args.val_data,
                ptx_data=args.ptx_data, overwrite=args.overwrite, resume=args.resume)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_compare(args) -> int:
    from instructrl import compare

    cfg = _load(C.CompareConfig, args, "compare", model=args.model)
    if args.labelers:
        cfg.labelers = args.labelers
    m = compare.run(cfg, model=args.model, prompts=args.prompts, out=args.out, labelers=cfg.labelers,
                    world_seed=args.world_seed, pool=args.pool)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_rm(args) -> int:
    from instructrl import rm

    cfg = _load(C.RMConfig, args, "rm", model=args.model)
    data = args.data[0] if len(args.data) == 1 else args.data
    m = rm.train_reward_model(cfg, model=args.model, data=data, out=args.out, demonstrations=args.demonstrations,
               heldout_data=args.heldout_data, overwrite=args.overwrite, resume=args.resume)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_ppo(args) -> int:
    from instructrl import ppo

    preset = _situation_preset(args, args.policy)
    section = "ppo_ptx" if args.ptx_data and preset else "ppo"
    args.preset = preset
    cfg = _load(C.PPOConfig, args, section)
    gold_fn = None
    if args.world_gold:
        from instructrl.world.judge import gold_score

        gold_fn = gold_score
    m = ppo.train_ppo(cfg, policy=args.policy, reward=args.reward, prompts=args.prompts, out=args.out,
                ptx_data=args.ptx_data, gold_fn=gold_fn, overwrite=args.overwrite, resume=args.resume)
    print(json.dumps(m, indent=2, default=str))
    return 0


def cmd_eval(args) -> int:
    from instructrl import evaluate

    first = next((s.split("=", 1)[1] for s in args.models if "=" in s), None)
    cfg = _load(C.EvalConfig, args, "eval", model=first)
    models = {}
    for spec in args.models:
        if "=" not in spec:
            raise InstructRLError(f"--models expects NAME=DIR, got {spec!r}")
        k, v = spec.split("=", 1)
        models[k] = v
    pairs = None
    if args.pairs:
        pairs = [tuple(p.split(":", 1)) for p in args.pairs]
    reference = models.get(args.reference, args.reference)  # a model name or a folder
    _refuse_eval_out(args.out, [*models.values(), reference, args.rm])
    m = evaluate.run(cfg, models=models, out=args.out, prompts=args.prompts, benchmarks=args.benchmarks,
                     pretrain_val=args.pretrain_val, reference=reference, rm=args.rm, pairs=pairs,
                     heldout_rankings=args.heldout_rankings, judge=args.judge)
    print(json.dumps(m, indent=2, default=str))
    return 0


def _refuse_eval_out(out, folders) -> None:
    """`eval --out` writes eval.json and samples.json: never into (or over) a model folder."""
    from instructrl.run import refuse_input_folders

    refuse_input_folders(out, {"--models": [f for f in folders if f]})
    if (Path(out) / "config.json").exists():
        raise InstructRLError(f"--out {out} is a model folder; choose another folder for eval.json and samples.json")


def cmd_generate(args) -> int:
    import math

    import torch

    from instructrl.data import render
    from instructrl.models import context_length, load_policy
    from instructrl.rollout import generate

    if args.n < 1 or args.n > 4096:
        raise InstructRLError(f"-n must be in [1, 4096], got {args.n}")
    if args.max_new_tokens < 1:
        raise InstructRLError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise InstructRLError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if not args.prompt.strip():
        raise InstructRLError("--prompt is empty")
    model, tok = load_policy(args.model, trust_remote_code=args.trust_remote_code)
    template = args.plain_template
    if args.world_format:  # the world's format, for a prompt given without its "Q: ... A:" frame
        template = "{prompt}" if args.prompt.rstrip().endswith("A:") else "Q: {prompt}\nA:"
    fmt = render.resolve(tok, args.prompt_format or ("plain" if args.world_format else "auto"), template or "",
                         args.model)
    render.check_matches(fmt, args.model, "the model")
    ids = render.prompt_ids(fmt, tok, args.prompt, None)
    n_ctx = context_length(model)
    if n_ctx is not None and len(ids) + args.max_new_tokens > n_ctx:
        raise InstructRLError(f"the prompt ({len(ids)} tokens as rendered) plus --max-new-tokens {args.max_new_tokens} "
                              f"is longer than the model's context of {n_ctx} tokens; shorten one of them")
    from instructrl.train_utils import warn_unknown_tokens

    warn_unknown_tokens(tok, [("--prompt", ids)], "the prompt")
    if args.show_prompt:
        print(f"prompt ({fmt.describe()}): {tok.decode(ids)!r}", file=sys.stderr)
    torch.manual_seed(args.seed)
    outs = generate(model, tok, [ids] * args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    batch_size=args.n, seed=args.seed)
    for o in outs:
        print(repr(o) if args.repr else o)
    return 0


def cmd_data_check(args) -> int:
    from instructrl.data.readers import describe

    print(json.dumps(describe(args.file), indent=2, default=str))
    return 0


def cmd_label_add_labeler(args) -> int:
    from instructrl.label.db import LabelDB

    token = LabelDB(args.db).add_labeler(args.name, new_token=args.new_token)
    print(f"labeler {args.name!r} {'has a new link' if args.new_token else 'added'}; their personal link "
          f"(shown once, keep it private):\n  {args.url.rstrip('/')}/l/{token}")
    return 0


def cmd_label_serve(args) -> int:
    from instructrl.label.app import serve
    from instructrl.label.db import LabelDB

    if not 0 <= args.port <= 65535:
        raise InstructRLError(f"--port must be in [0, 65535] (0: any free port), got {args.port}")
    if args.overlap is not None and args.overlap < 1:
        raise InstructRLError(f"--overlap must be >= 1, got {args.overlap}")

    db = LabelDB(args.db)
    if args.tasks:
        print(json.dumps(db.add_tasks_file(args.tasks)))
    elif db.n_tasks() == 0:
        raise InstructRLError("the database holds no tasks: give --tasks FILE ({prompt, responses} lines, "
                              "as `instructrl compare --labelers none` writes)")
    if args.overlap is not None:
        db.set_overlap(args.overlap)
    serve(db, host=args.host, port=args.port)
    return 0


def cmd_label_export(args) -> int:
    from instructrl.label.db import LabelDB

    parent = Path(args.out).parent
    if not parent.is_dir():
        raise InstructRLError(f"--out {args.out}: folder {parent} does not exist")

    n = LabelDB(args.db, create=False).export(args.out)
    print(f"exported {n} rankings -> {args.out}" + ("" if n else " (nothing ranked yet)"))
    return 0


def cmd_label_stats(args) -> int:
    from instructrl.label.db import LabelDB, format_stats

    s = LabelDB(args.db, create=False).stats()
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    return 0


# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructrl",
        description="InstructGPT end to end: SFT, K-wise reward model, PPO / PPO-ptx, evaluation.",
        epilog="Run `instructrl pipeline` for the whole paper in miniature on a CPU; `instructrl CMD --help` for each stage.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging and full tracebacks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _stage_parser(sub, "pipeline", C.PipelineConfig,
                      "The whole world end to end: world -> base models -> SFT -> comparisons -> RM -> PPO -> PPO-ptx -> eval -> report.",
                      preset="default")
    p.add_argument("--out", default=None, help="Run folder (default: a fresh folder under runs/).")
    p.add_argument("--overwrite", action="store_true", help="Reuse/replace a run folder that holds a different run.")
    p.set_defaults(func=cmd_pipeline)

    pw = sub.add_parser("world", help="The simulated world's data.")
    wsub = pw.add_subparsers(dest="world_command", metavar="WORLD_COMMAND")
    p = _stage_parser(wsub, "build", C.WorldConfig, "Write the world's data files (JSONL) and world.json.", "world")
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--seed", type=int, default=None, help="World seed (same seed -> byte-identical files).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing non-empty output folder (once the new world is complete).")
    p.set_defaults(func=cmd_world_build)

    p = _stage_parser(sub, "pretrain", C.PretrainConfig, "Pretrain a base model on the world's corpus (or any text).", "base_small / base_large")
    p.add_argument("--world", default=None, help="World folder: use its pretrain.jsonl and pretrain_val.jsonl.")
    p.add_argument("--data", default=None, help="Pretraining text: JSONL {\"text\"} or .txt.")
    p.add_argument("--val-data", default=None, help="Held-out text for the validation loss.")
    p.add_argument("--size", choices=["small", "large"], default="small", help="Which preset section to use (base_small or base_large).")
    p.add_argument("--out", required=True, help="Output model folder.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing model folder (once the new one is complete).")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint (OUT.checkpoint/), with the same arguments.")
    p.set_defaults(func=cmd_pretrain)

    p = _stage_parser(sub, "sft", C.SFTConfig, "Supervised fine-tuning on demonstrations (loss on response tokens only).", "sft",
                      prompts=True)
    p.add_argument("--model", required=True, help="Causal-LM folder to start from.")
    p.add_argument("--data", required=True, help="Demonstrations JSONL: {prompt, response} or {messages}.")
    p.add_argument("--val-data", default=None, help="Validation demonstrations (loss / RM-score selection).")
    p.add_argument("--ptx-data", default=None, help="Pretraining text mixed in with ptx_fraction.")
    p.add_argument("--select-by-rm", default=None, metavar="RM_DIR", help="Select the checkpoint by mean RM score on validation prompts (paper).")
    p.add_argument("--out", required=True, help="Output model folder.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint (OUT.checkpoint/), with the same arguments.")
    p.set_defaults(func=cmd_sft)

    p = _stage_parser(sub, "compare", C.CompareConfig, "Sample K responses per prompt and have (simulated) labelers rank them.", "compare",
                      prompts=True)
    p.add_argument("--model", required=True, help="Policy folder to sample from (the SFT model).")
    p.add_argument("--prompts", required=True, help="Prompts JSONL {prompt}.")
    p.add_argument("--out", required=True, help="Output rankings JSONL.")
    p.add_argument("--labelers", choices=["world", "none"], default=None, help="'world': simulated labelers; 'none': unranked, for people.")
    p.add_argument("--pool", choices=["train", "heldout"], default="train", help="Which simulated labelers rank.")
    p.add_argument("--world-seed", type=int, default=0, help="Seed of the world's labeler pool.")
    p.set_defaults(func=cmd_compare)

    p = _stage_parser(sub, "rm", C.RMConfig, "Train a reward model with the K-wise ranking loss.", "rm", prompts=True)
    p.add_argument("--model", required=True, help="Causal-LM folder to initialise from (the SFT model).")
    p.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="Rankings JSONL (K-wise, pairwise, HH, chat chosen/rejected...); several files are read as one set.")
    p.add_argument("--demonstrations", default=None, help="Demonstrations whose mean score is shifted to 0 after training.")
    p.add_argument("--heldout-data", default=None, help="Rankings by held-out labelers, for generalisation accuracy.")
    p.add_argument("--out", required=True, help="Output RM folder.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint (OUT.checkpoint/), with the same arguments.")
    p.set_defaults(func=cmd_rm)

    p = _stage_parser(sub, "ppo", C.PPOConfig, "PPO (and PPO-ptx with --ptx-data and ptx_coef > 0) against a reward model.", "ppo / ppo_ptx",
                      prompts=True)
    p.add_argument("--policy", required=True, help="SFT folder: the initial policy and the frozen KL reference.")
    p.add_argument("--reward", required=True, help="RM folder (frozen; also initialises the value model).")
    p.add_argument("--prompts", required=True, help="Prompts JSONL {prompt}.")
    p.add_argument("--ptx-data", default=None, help="Pretraining text for PPO-ptx.")
    p.add_argument("--world-gold", action="store_true", help="Log the world's gold score of rollouts (evaluation only).")
    p.add_argument("--out", required=True, help="Output policy folder.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output folder (once the new run is complete).")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint (OUT.checkpoint/), with the same arguments.")
    p.set_defaults(func=cmd_ppo)

    p = _stage_parser(sub, "eval", C.EvalConfig, "Win rates, KL, alignment tax and HHH rates for model folders.", "eval",
                      prompts=True)
    p.add_argument("--models", nargs="+", required=True, metavar="NAME=DIR", help="Models to evaluate, e.g. sft=runs/x/sft ppo=runs/x/ppo.")
    p.add_argument("--prompts", required=True, help="Held-out prompts JSONL.")
    p.add_argument("--pairs", nargs="*", default=None, metavar="A:B", help="Win-rate pairs A:B (default: the pipeline's pairs among the given names, e.g. ppo:sft, then every other model vs the reference).")
    p.add_argument("--reference", default=None, help="The KL reference (the SFT model): one of the --models names, or a folder.")
    p.add_argument("--rm", default=None, help="RM folder: judge for real models outside the world, and best-of-n.")
    p.add_argument("--judge", default=None, metavar="JUDGE",
                   help="Who decides the win rates: 'world' (held-out simulated labelers and the gold judge; the default on "
                        "the world's prompts), an RM folder (win rate by RM score), a causal-LM folder (a pairwise judge "
                        "with the judge_template prompt, both orders averaged), or 'none'. Default elsewhere: --rm if "
                        "given, else none (eval then reports length, empty-answer rate, EOS rate and KL only).")
    p.add_argument("--benchmarks", default=None, help="Benchmark items JSONL (alignment tax).")
    p.add_argument("--pretrain-val", default=None, help="Held-out pretraining text (alignment tax).")
    p.add_argument("--heldout-rankings", default=None, metavar="FILE",
                   help="Rankings by held-out labelers on world prompts (needs --rm): the RM's and the gold judge's "
                        "pairwise accuracy on them, per task family (rm_family.* keys).")
    p.add_argument("--out", required=True, help="Output folder for eval.json and samples.json.")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("generate", help="Try a model folder on a prompt.")
    p.add_argument("--model", required=True, help="Policy folder.")
    p.add_argument("--prompt", required=True, help="Prompt text.")
    p.add_argument("--world-format", action="store_true",
                   help="The world's plain format: the prompt as 'Q: ...\\nA:' (same as --plain-template 'Q: {prompt}\\nA:').")
    p.add_argument("--prompt-format", choices=["auto", "chat", "plain"], default=None,
                   help="How the prompt is rendered (default auto: the folder's recorded format, else its chat template "
                        "when it has one, else plain).")
    p.add_argument("--plain-template", default=None, metavar="TEXT", help="Plain format, e.g. 'Q: {prompt}\\nA:'.")
    p.add_argument("--show-prompt", action="store_true", help="Print the rendered prompt (to stderr).")
    p.add_argument("-n", type=int, default=1, help="Samples.")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy.")
    p.add_argument("--max-new-tokens", type=int, default=64, help="Longest response.")
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    p.add_argument("--repr", action="store_true", help="Print responses with repr() (shows newlines).")
    p.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code from the folder.")
    p.set_defaults(func=cmd_generate)

    pd = sub.add_parser("data", help="Data files.")
    dsub = pd.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p = dsub.add_parser("check", help="Validate a data file and print what it holds (kind, count, K distribution, lengths).")
    p.add_argument("file", help="JSONL / Parquet / txt file.")
    p.set_defaults(func=cmd_data_check)

    pl = sub.add_parser("label", help="Collect rankings from people in a web app (SQLite-backed).")
    lsub = pl.add_subparsers(dest="label_command", metavar="LABEL_COMMAND")
    p = lsub.add_parser("add-labeler", help="Create a labeler and print their personal link.")
    p.add_argument("name", help="Labeler name (letters, digits, . _ - + @); written as 'labeler' in the export.")
    p.add_argument("--db", required=True, help="Labeling database (SQLite file; created if missing).")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL the server is reached at (for the link).")
    p.add_argument("--new-token", action="store_true", help="Replace an existing labeler's link (the old one stops working).")
    p.set_defaults(func=cmd_label_add_labeler)
    p = lsub.add_parser("serve", help="Serve the labeling app (werkzeug's threaded server; loopback by default).")
    p.add_argument("--tasks", default=None, help="Tasks JSONL {prompt, responses} (from `compare --labelers none`); "
                                                 "added to the database, already-loaded tasks skipped.")
    p.add_argument("--db", required=True, help="Labeling database (SQLite file; created if missing).")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default loopback only).")
    p.add_argument("--port", type=int, default=8000, help="Port.")
    p.add_argument("--overlap", type=int, default=None,
                   help="How many different labelers rank each task (2+ measures agreement; stored in the db; default 1).")
    p.set_defaults(func=cmd_label_serve)
    p = lsub.add_parser("export", help="Write the rankings JSONL `instructrl rm` reads (one line per task and labeler).")
    p.add_argument("--db", required=True, help="Labeling database.")
    p.add_argument("--out", required=True, help="Output rankings JSONL.")
    p.set_defaults(func=cmd_label_export)
    p = lsub.add_parser("stats", help="Progress per labeler and pairwise inter-labeler agreement.")
    p.add_argument("--db", required=True, help="Labeling database.")
    p.add_argument("--json", action="store_true", help="Print JSON.")
    p.set_defaults(func=cmd_label_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    from instructrl.threads import configure

    configure()  # OMP_WAIT_POLICY=PASSIVE before torch starts OpenMP (instructrl.threads)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except InstructRLError as e:
        if args.verbose:
            raise
        return _error(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, RecursionError) as e:  # the environment, not a bug of ours: one line
        if args.verbose:
            raise
        from instructrl.run import is_disk_full

        if is_disk_full(e):
            return _error(f"no space left on device: {getattr(e, 'filename', None) or '(the output folder)'}")
        if isinstance(e, RecursionError):
            return _error("input nested too deeply")
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return _error(f"{where}{e.strerror or e}")
    except Exception as e:  # safetensors' own I/O errors (a full disk while writing weights)
        from instructrl.run import is_disk_full

        if args.verbose or not is_disk_full(e):
            raise
        return _error("no space left on device: (the output folder)")


def _error(message) -> int:
    """A user error: one line on stderr, exit status 2 (`-v` shows the traceback instead)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
