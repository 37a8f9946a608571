"""`instructrl pipeline`: the paper in miniature, world -> report, in one command.

Stages run in order, each writing an ordinary folder or file under the run folder:

    world/ -> base_small/ (+ base_large/) -> sft/ -> comparisons.jsonl (+ comparisons_heldout.jsonl)
    -> rm/ -> ppo/ -> ppo_ptx/ -> metrics.json, report.html

With `rlhf_rounds` R > 1 (iterated RLHF), rounds 1..R-1 write round<r>/rm/ and round<r>/ppo/, and
round r >= 2 starts with comparisons_round<r>.jsonl: the training labelers rank samples of round
r-1's PPO policy on the RM prompts; its RM trains on every comparisons file so far. rm/, ppo/ and
ppo_ptx/ are always the last round's.

Resume: re-running the same command after a crash or kill continues each unfinished training stage
from its last checkpoint (`resume="auto"`: only a checkpoint of the very same stage, config and
inputs is used; a stale one is discarded).

Caching: each stage records `stage.json` (the hash of its config and of its inputs' hashes, its
metrics, its wall time) when it completes. A rerun skips a stage whose hash matches, so a changed
late-stage setting redoes only that stage and what follows. Base models are also cached across run
folders under `$INSTRUCTRL_CACHE_DIR` (default `~/.cache/instructrl`) by their hash, since they are
the slowest part and depend only on the pretraining corpus and their own config. A stage whose result
already lies in the run folder under another name (round 1's RM and PPO are what a one-round run
keeps in rm/ and ppo/, and the other way round) is copied from there, not recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

from instructrl import config as C
from instructrl import metric_keys as K
from instructrl.errors import InstructRLError

STAGE_FILE = "stage.json"


def cache_root() -> Path:
    return Path(os.environ.get("INSTRUCTRL_CACHE_DIR", Path.home() / ".cache" / "instructrl"))


def _stage_marker(path: Path) -> Path:
    return path / STAGE_FILE if path.suffix == "" else path.with_name(path.name + "." + STAGE_FILE)


def _done(path: Path, h: str) -> dict | None:
    m = _stage_marker(path)
    if path.exists() and m.exists():
        info = json.loads(m.read_text())
        if info.get("hash") == h:
            return info
    return None


def _mark(path: Path, h: str, metrics: dict, t: float) -> None:
    _stage_marker(path).write_text(json.dumps({"hash": h, "time_s": t, "metrics": metrics}, indent=2, default=str))


def _remove(path: Path) -> None:
    """Delete a folder or a file, if there is one."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _copy_stage(src: Path, dest: Path) -> None:
    """Copy a finished stage's output and its marker from `src` to `dest`. A folder is copied beside
    `dest` under a hidden name and moved into place; a marker outside the output (a file's, or a
    folder's whose name has a dot, e.g. sweeps/ppo_beta_0.02) is removed first and written last, so
    an interrupted copy never looks finished."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    m_src, m_dest = _stage_marker(src), _stage_marker(dest)
    inside = m_dest.parent == dest
    if not inside:
        m_dest.unlink(missing_ok=True)
    tmp = dest.with_name(f".{dest.name}.copying")
    _remove(tmp)
    if src.is_dir():
        shutil.copytree(src, tmp)
        if inside:
            shutil.copy2(m_src, tmp / m_dest.name)
        _remove(dest)
    else:
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)
    if not inside:
        shutil.copy2(m_src, m_dest)


class Stages:
    """Bookkeeping for the run: cached execution, timings and a one-line progress display."""

    def __init__(self, n_total: int):
        self.times: dict[str, float] = {}
        self.i = 0
        self.n = n_total
        self.t0 = time.time()

    def run(self, name: str, path: Path, h: str, fn, keep: bool = False, reuse: tuple[Path, ...] = ()):
        """Run `fn` unless `path` holds this stage's result for hash `h`. `keep`: do not clear an
        unfinished `path` first (the stage resumes from a checkpoint inside it). `reuse`: other
        places in the run folder where this very stage may already lie under another name (round 1's
        RM is what a one-round run keeps in rm/): a finished one with hash `h` is copied to `path`
        instead of being recomputed."""
        self.i += 1
        info = _done(path, h)
        head = f"[{self.i}/{self.n}] {name}"
        if info is not None:
            print(f"{head}: cached ({info['time_s']:.0f}s when computed)", flush=True)
            self.times[name] = 0.0
            return info["metrics"]
        for src in reuse:
            if src != path and (info := _done(src, h)) is not None:
                _copy_stage(src, path)
                print(f"{head}: copied from {src} (the same stage; {info['time_s']:.0f}s when computed)", flush=True)
                self.times[name] = 0.0
                return info["metrics"]
        print(f"{head} ... (elapsed {time.time() - self.t0:.0f}s)", flush=True)
        t = time.time()
        if path.exists() and path.is_dir() and path.suffix == "" and not keep:
            shutil.rmtree(path)
        metrics = fn() or {}
        dt = time.time() - t
        self.times[name] = dt
        _mark(path, h, metrics, dt)
        print(f"{head}: done in {dt:.0f}s", flush=True)
        return metrics


def _corpus_hash(world_dir: Path) -> str:
    """Content hash of the pretraining corpus (all a base model sees): the base models are cached by
    it, so changing how many demonstrations or RM prompts the world has does not retrain them."""
    import hashlib

    h = hashlib.sha256()
    for name in ("pretrain.jsonl", "pretrain_val.jsonl"):
        h.update(name.encode())
        with open(world_dir / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _cached_base(stages: Stages, name: str, cfg: C.PretrainConfig, world_dir: Path, corpus_hash: str, dest: Path):
    """Pretrain a base model once per (corpus, config); copy it into the run folder."""
    from instructrl import pretrain
    from instructrl.precision import resolve as resolve_precision

    # Keyed by the precision actually used, so that a base trained in fp32 is not taken for the
    # bf16 one "auto" means on a machine with native bf16 (or the other way round).
    h = C.config_hash("pretrain", corpus_hash, dataclasses.replace(cfg, precision=resolve_precision(cfg.precision)))
    cached = cache_root() / "base" / h

    def fn():
        if not (_done(cached, h)):
            t = time.time()
            m = pretrain.pretrain_base(cfg, str(world_dir / "pretrain.jsonl"), str(cached), val_data=str(world_dir / "pretrain_val.jsonl"),
                             overwrite=True, resume="auto")  # continues an interrupted pretraining of this hash
            _mark(cached, h, m, time.time() - t)
        else:
            print(f"    using cached base model {cached}", flush=True)
        shutil.copytree(cached, dest)
        return json.loads(_stage_marker(cached).read_text())["metrics"]

    return stages.run(name, dest, h, fn), h


@dataclasses.dataclass
class _Run:
    """What every step of one pipeline run reads: its config, folder, stage bookkeeping and the hashes
    (cache keys) of the outputs later stages depend on."""

    cfg: C.PipelineConfig
    out: Path
    st: Stages
    world_dir: Path
    world_hash: str
    h_small: str = ""
    h_large: str = ""
    h_sft: str = ""
    h_comp: str = ""
    h_comp_ho: str = ""

    @property
    def sft_dir(self) -> Path:
        return self.out / "sft"

    @property
    def ppo_cfg(self) -> C.PPOConfig:
        """Plain PPO's config: `cfg.ppo` with gamma = 0 (PPO-ptx is `cfg.ppo_ptx`)."""
        return dataclasses.replace(self.cfg.ppo, ptx_coef=0.0)

    @property
    def comp(self) -> Path:
        return self.out / "comparisons.jsonl"

    @property
    def comp_ho(self) -> Path:
        return self.out / "comparisons_heldout.jsonl"


def run(cfg: C.PipelineConfig, out: str | None = None, preset_name: str = "default", overwrite: bool = False) -> dict:
    C.validate(cfg)  # settings that would only fail late (each config's own rules): before any work
    t_start = time.time()
    r = _open_run(cfg, out, preset_name, overwrite)
    metrics: dict = {}

    # 1. The world: data files.
    _build_world(r, preset_name)

    # 2. Base models ("GPT-3"): small, and large (>= 8x the parameters).
    metrics.update(_pretrain_bases(r))

    # 3. SFT on demonstrations.
    _, r.h_sft = _sft_stage(r, "sft", r.out / "base_small", r.h_small)

    # 4. Comparisons: K samples per RM prompt from SFT, ranked by training labelers; a held-out
    #    labelers' set on separate prompts measures how the RM generalises to new people.
    metrics["labelers.agreement"] = _comparisons(r)

    # 5-6. RLHF rounds: reward model (K-wise loss, bias shifted so demonstrations score mean 0),
    #      then PPO and PPO-ptx from the SFT policy against it. Round r > 1 first has the labelers
    #      rank samples of round r-1's PPO policy: the behaviours PPO found that the RM over-rates
    #      (reward hacking) get labelled, and the next RM learns from them.
    rm_dir, h_rm, earlier_rounds = _rlhf_rounds(r, metrics)
    _ppo_stage(r, "ppo", r.ppo_cfg, False, rm_dir, h_rm, reuse=(r.out / f"round{cfg.rlhf_rounds}" / "ppo",))
    _ppo_stage(r, "ppo_ptx", cfg.ppo_ptx, True, rm_dir, h_rm)
    _remove_other_rounds(r)
    sweeps = _sweeps(r, rm_dir, h_rm)

    # 6b. Both model sizes through the whole method (the paper aligns every size with one RM): SFT on
    #     the large base, then PPO and PPO-ptx from it against the same last-round RM.
    large_models = _align_large(r, rm_dir, h_rm) if cfg.align_large else {}

    # 7. Evaluation on held-out prompts: win rates (held-out labelers), gold, KL, tax, HHH.
    ev, samples = _evaluate(r, rm_dir, earlier_rounds, large_models)
    metrics.update(ev)

    # 8. metrics.json and report.html.
    for k, v in r.st.times.items():
        metrics[K.key("time_s", k.replace('/', '.'))] = round(v, 2)
    metrics[K.key("time_s", "total")] = round(time.time() - t_start, 2)
    _write_outputs(r, metrics, samples, sweeps, rm_dir, earlier_rounds, large_models)
    print(f"metrics: {r.out / 'metrics.json'}\nreport:  {r.out / 'report.html'}")
    print(headline(metrics))
    return metrics


def _open_run(cfg: C.PipelineConfig, out: str | None, preset_name: str, overwrite: bool) -> _Run:
    """The run folder (refusing one that holds another world's run unless `overwrite`), the resolved
    config saved in it, and the stage counter."""
    out = Path(out) if out else Path("runs") / f"{preset_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    world_hash = C.config_hash("world", cfg.world, cfg.seed)
    if (out / "pipeline.json").exists():
        old = json.loads((out / "pipeline.json").read_text())
        if old.get("world_hash") != world_hash and not overwrite:
            raise InstructRLError(f"{out} holds a run of a different world; choose another --out or pass --overwrite")
    C.save_config(cfg, out)
    n_total = (9 + 3 * (cfg.rlhf_rounds - 1) + (1 if cfg.train_large else 0) + (3 if cfg.align_large else 0)
               + len(cfg.sweeps.runs()))
    return _Run(cfg=cfg, out=out, st=Stages(n_total), world_dir=out / "world", world_hash=world_hash)


def _build_world(r: _Run, preset_name: str) -> None:
    from instructrl.world.build import build_world

    w = r.cfg.world
    r.st.run("world", r.world_dir, r.world_hash, lambda: build_world(
        r.world_dir, seed=w.seed, n_sft=w.n_sft, n_sft_val=w.n_sft_val, n_rm=w.n_rm, n_ppo=w.n_ppo, n_eval=w.n_eval,
        corpus_chars=w.corpus_chars, n_benchmark=w.n_benchmark))
    (r.out / "pipeline.json").write_text(json.dumps({"world_hash": r.world_hash, "preset": preset_name}))


def _pretrain_bases(r: _Run) -> dict:
    corpus_hash = _corpus_hash(r.world_dir)
    m_small, r.h_small = _cached_base(r.st, "base_small", r.cfg.base_small, r.world_dir, corpus_hash, r.out / "base_small")
    metrics = {"params.base": m_small.get("params")}
    if r.cfg.train_large:
        m_large, r.h_large = _cached_base(r.st, "base_large", r.cfg.base_large, r.world_dir, corpus_hash, r.out / "base_large")
        metrics["params.base_large"] = m_large.get("params")
    return metrics


def _sft_stage(r: _Run, name: str, base: Path, h_base: str) -> tuple[Path, str]:
    from instructrl import sft

    d = r.out / name
    h = C.config_hash("sft", r.world_hash, h_base, r.cfg.sft)
    r.st.run(name, d, h, lambda: sft.train_sft(
        r.cfg.sft, model=str(base), data=str(r.world_dir / "demonstrations.jsonl"), out=str(d),
        val_data=str(r.world_dir / "sft_val.jsonl"), ptx_data=str(r.world_dir / "pretrain.jsonl"), overwrite=True,
        resume="auto"))
    return d, h


def labels_hash(*parts) -> str:
    """Cache key of a comparisons stage: its own inputs, plus what a ranking depends on beyond them,
    the labelers' noise and the gold judge they rank by (``JUDGE_VERSION``, bumped by every fix of a
    check), so that rankings made by another judge are redone, not reused."""
    from instructrl.world.labelers import DEFAULT_NOISE
    from instructrl.world.spec import JUDGE_VERSION

    return C.config_hash(*parts, DEFAULT_NOISE, JUDGE_VERSION)


def _comparisons(r: _Run) -> float:
    """The training labelers' rankings of SFT samples on the RM prompts and the held-out labelers' on
    separate prompts; returns the training labelers' agreement."""
    from instructrl import compare

    cfg, w = r.cfg, r.cfg.world
    r.h_comp = labels_hash("compare", r.h_sft, cfg.compare)
    r.st.run("compare", r.comp, r.h_comp, lambda: compare.run(
        cfg.compare, model=str(r.sft_dir), prompts=str(r.world_dir / "rm_prompts.jsonl"), out=str(r.comp),
        labelers="world", world_seed=w.seed, pool="train"))
    ho_cfg = dataclasses.replace(cfg.compare, n_prompts=min(300, w.n_sft_val), seed=cfg.compare.seed + 1)
    r.h_comp_ho = labels_hash("compare_heldout", r.h_sft, ho_cfg)
    r.st.run("compare_heldout", r.comp_ho, r.h_comp_ho, lambda: compare.run(
        ho_cfg, model=str(r.sft_dir), prompts=str(r.world_dir / "sft_val.jsonl"), out=str(r.comp_ho),
        labelers="world", world_seed=w.seed, pool="heldout"))
    return labeler_agreement(r.comp, w.seed)


def _ppo_stage(r: _Run, name: str, pcfg: C.PPOConfig, ptx: bool, rm_dir: Path, h_rm: str,
               policy_dir: Path | None = None, h_policy: str | None = None,
               reuse: tuple[Path, ...] = ()) -> tuple[Path, str]:
    """PPO (or PPO-ptx when `ptx`) from `policy_dir` (default: the small SFT model) against the RM.
    `reuse`: see `Stages.run`."""
    from instructrl import ppo
    from instructrl.world.judge import gold_score

    policy_dir = r.sft_dir if policy_dir is None else policy_dir
    h_policy = r.h_sft if h_policy is None else h_policy
    d = r.out / name
    h = C.config_hash("ppo", h_policy, h_rm, pcfg, ptx)
    r.st.run(name, d, h, lambda: ppo.train_ppo(
        pcfg, policy=str(policy_dir), reward=str(rm_dir), prompts=str(r.world_dir / "ppo_prompts.jsonl"), out=str(d),
        ptx_data=str(r.world_dir / "pretrain.jsonl") if ptx else None, gold_fn=gold_score, overwrite=True,
        resume="auto"), reuse=reuse)
    return d, h


def _rlhf_rounds(r: _Run, metrics: dict) -> tuple[Path, str, dict[str, Path]]:
    """Every round's RM and, for rounds before the last, its PPO policy and the next round's rankings
    of that policy's samples. Returns the last RM's folder and hash and the earlier rounds' PPO
    policies (eval name -> folder)."""
    from instructrl import compare, rm

    cfg = r.cfg
    rm_from = r.out / "base_large" if cfg.rm_init == "base_large" else r.sft_dir
    data_files, h_data = [r.comp], r.h_comp
    earlier_rounds: dict[str, Path] = {}  # eval name -> that round's PPO policy
    h_prev_ppo = ""
    for n in range(1, cfg.rlhf_rounds + 1):
        last = n == cfg.rlhf_rounds
        prefix = "" if last else f"round{n}/"
        if n > 1:
            prev_ppo = earlier_rounds[K.round_model(n - 1)]
            comp_n = r.out / f"comparisons_round{n}.jsonl"
            cmp_cfg = dataclasses.replace(cfg.compare, seed=cfg.compare.seed + 100 * n)
            h_comp_n = labels_hash("compare_round", n, h_prev_ppo, cmp_cfg)
            r.st.run(f"compare_round{n}", comp_n, h_comp_n, lambda: compare.run(
                cmp_cfg, model=str(prev_ppo), prompts=str(r.world_dir / "rm_prompts.jsonl"), out=str(comp_n),
                labelers="world", world_seed=cfg.world.seed, pool="train"))
            data_files.append(comp_n)
            h_data = C.config_hash(h_data, h_comp_n)
        rm_dir = r.out / f"{prefix}rm"
        h_rm = C.config_hash("rm", h_data, r.h_comp_ho, cfg.rm, cfg.rm_init)
        # Round n's RM and PPO may already lie in this folder under the other name: a one-round run
        # keeps round 1's in rm/ and ppo/, a run with more rounds kept round n's in round<n>/.
        m_rm = r.st.run(f"{prefix}rm", rm_dir, h_rm, lambda: rm.train_reward_model(
            cfg.rm, model=str(rm_from), data=[str(p) for p in data_files] if len(data_files) > 1 else str(r.comp),
            out=str(rm_dir), demonstrations=str(r.world_dir / "demonstrations.jsonl"), heldout_data=str(r.comp_ho),
            overwrite=True, resume="auto"), reuse=(r.out / "rm", r.out / f"round{n}" / "rm"))
        key = K.rm_prefix(None if last else n)
        for what in ("val_accuracy", "heldout_labeler_accuracy"):
            metrics[K.key(key, what)] = m_rm.get(what)
        if not last:  # an earlier round only needs the PPO policy whose samples the next round labels
            d, h_prev_ppo = _ppo_stage(r, f"{prefix}ppo", r.ppo_cfg, False, rm_dir, h_rm,
                                       reuse=(r.out / "ppo", r.out / f"round{n}" / "ppo"))
            earlier_rounds[K.round_model(n)] = d
    return rm_dir, h_rm, earlier_rounds


def _remove_other_rounds(r: _Run) -> None:
    """Outputs of more rounds than this run has (an earlier run in this folder with a larger
    rlhf_rounds) would look like part of this one: remove them, once the stages that can copy from
    them (`Stages.run`'s `reuse`) have run."""
    for p in r.out.iterdir():
        m = re.fullmatch(r"round(\d+)", p.name) if p.is_dir() else \
            re.fullmatch(r"comparisons_round(\d+)\.jsonl(\.stage\.json)?", p.name)
        if m and int(m.group(1)) >= r.cfg.rlhf_rounds + (0 if p.is_dir() else 1):
            _remove(p)


def _sweeps(r: _Run, rm_dir: Path, h_rm: str) -> list[tuple]:
    """The preset's typed sweeps (beta for PPO, gamma for PPO-ptx), one PPO run each: (field, value,
    folder, the run's PPO config) per run."""
    sweeps = []
    for field, value in r.cfg.sweeps.runs():
        if field == "kl_coef":
            name, pcfg, ptx = f"sweeps/ppo_beta_{value}", dataclasses.replace(r.ppo_cfg, kl_coef=value), False
        else:
            name, pcfg, ptx = f"sweeps/ppo_ptx_gamma_{value}", dataclasses.replace(r.cfg.ppo_ptx, ptx_coef=value), True
        # A swept value equal to the run's own (the README's beta sweep lists the default 0.02) is the
        # very same PPO run as ppo/ (or ppo_ptx/): copied from there.
        d, _ = _ppo_stage(r, name, pcfg, ptx, rm_dir, h_rm, reuse=(r.out / ("ppo_ptx" if ptx else "ppo"),))
        sweeps.append((field, value, d, pcfg))
    return sweeps


def _align_large(r: _Run, rm_dir: Path, h_rm: str) -> dict[str, Path]:
    sft_large_dir, h_sft_large = _sft_stage(r, "sft_large", r.out / "base_large", r.h_large)
    _ppo_stage(r, "ppo_large", r.ppo_cfg, False, rm_dir, h_rm, sft_large_dir, h_sft_large)
    _ppo_stage(r, "ppo_ptx_large", r.cfg.ppo_ptx, True, rm_dir, h_rm, sft_large_dir, h_sft_large)
    return {"sft_large": sft_large_dir, "ppo_large": r.out / "ppo_large", "ppo_ptx_large": r.out / "ppo_ptx_large"}


def _evaluate(r: _Run, rm_dir: Path, earlier_rounds: dict[str, Path], large_models: dict[str, Path]):
    """Every model of the run on the held-out prompts; the pairs compared and whose KL is measured."""
    from instructrl.evaluate import evaluate_models

    models = {"base": r.out / "base_small", "sft": r.sft_dir, "ppo": r.out / "ppo", "ppo_ptx": r.out / "ppo_ptx",
              **earlier_rounds}
    pairs = [("sft", "base"), ("ppo", "sft"), ("ppo_ptx", "sft")] + [(name, "sft") for name in earlier_rounds]
    kl_models = ["ppo", "ppo_ptx", *earlier_rounds]  # KL to the small SFT; the large ones' is in their log.csv
    if r.cfg.train_large:
        models["base_large"] = r.out / "base_large"
        pairs.append(("ppo_ptx", "base_large"))
    if large_models:
        models.update(large_models)
        # The paper's Fig. 1: every model, both sizes, against the large SFT model.
        pairs += [(m, "sft_large") for m in ("base", "sft", "ppo", "ppo_ptx", "base_large", "ppo_large", "ppo_ptx_large")]
    t = time.time()
    print(f"[{r.st.n}/{r.st.n}] eval ...", flush=True)
    w = r.world_dir
    metrics_and_samples = evaluate_models(
        {k: str(v) for k, v in models.items()}, "sft", str(w / "eval_prompts.jsonl"), str(w / "benchmarks.jsonl"),
        str(w / "pretrain_val.jsonl"), r.cfg.eval, rm_folder=str(rm_dir), world_seed=r.cfg.world.seed, pairs=pairs,
        kl_models=kl_models, heldout_rankings_path=str(r.comp_ho))
    r.st.times["eval"] = time.time() - t
    return metrics_and_samples


def _write_outputs(r: _Run, metrics: dict, samples, sweep_runs: list, rm_dir: Path,
                   earlier_rounds: dict[str, Path], large_models: dict[str, Path]) -> None:
    from instructrl.report import write_report

    out = r.out
    sweeps = [sweep_entry(field, value, d, pcfg) for field, value, d, pcfg in sweep_runs]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=_json_default))
    logs = {n: str(out / n / "log.csv") for n in ("ppo", "ppo_ptx") if (out / n / "log.csv").exists()}
    logs.update({n: str(d / "log.csv") for n, d in earlier_rounds.items() if (d / "log.csv").exists()})
    logs.update({n: str(d / "log.csv") for n, d in large_models.items()
                 if n != "sft_large" and (d / "log.csv").exists()})
    logs.update({"sft": str(r.sft_dir / "log.csv"), "rm": str(rm_dir / "log.csv")})
    if sweeps:
        (out / "sweeps.json").write_text(json.dumps(sweeps, indent=2, default=_json_default))
    elif (out / "sweeps.json").exists():
        (out / "sweeps.json").unlink()
    write_report(out, metrics, out / "report.html", samples=samples, logs=logs,
                 extra_plots={"sweeps": sweeps} if sweeps else None)


def labeler_agreement(comparisons: Path, world_seed: int) -> float:
    """Pairwise agreement of two training labelers re-ranking the same SFT samples (paper: 72.6%)."""
    import numpy as np

    from instructrl.data.readers import read_rankings
    from instructrl.world.labelers import make_labeler_pool, pool_agreement

    train, _ = make_labeler_pool(world_seed)
    items = [(r.prompt, r.responses) for r in read_rankings(comparisons)][:500]
    return float(pool_agreement(train, items, np.random.default_rng(world_seed + 7)))


def sweep_entry(field: str, value: float, d: Path, pcfg: C.PPOConfig) -> dict:
    """One sweep run as the report reads it (``sweeps.json``): which coefficient was swept (``field``:
    kl_coef or ptx_coef) and to what, the run's beta and gamma as numbers, its final metrics
    (``metrics.json`` of the PPO folder) and its log."""
    m = d / "metrics.json"
    return {"field": field, "value": float(value), "kl_coef": float(pcfg.kl_coef), "ptx_coef": float(pcfg.ptx_coef),
            "folder": str(d), "log": str(d / "log.csv"), "metrics": json.loads(m.read_text()) if m.exists() else {}}


def _json_default(o):
    try:
        return float(o)
    except Exception:
        return str(o)


def headline(m: dict) -> str:
    def g(k):
        v = m.get(k)
        return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    rows = [
        ("SFT vs base", K.pair("sft", "base")),
        ("PPO vs SFT", K.pair("ppo", "sft")),
        ("PPO-ptx vs SFT", K.pair("ppo_ptx", "sft")),
        ("PPO-ptx (small) vs large base", K.pair("ppo_ptx", "base_large")),
    ]
    lines = ["win rates (held-out simulated labelers):"]
    for label, p in rows:
        k = K.key("winrate", p)
        if k in m:
            ci = m.get(K.ci("winrate", p), [None, None])
            lines.append(f"  {label:32s} {g(k)}  95% CI [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else f"  {label:32s} {g(k)}")
    lines.append(f"labeler agreement {g('labelers.agreement')}, RM val accuracy {g('rm.val_accuracy')}, total {g('time_s.total')}s")
    return "\n".join(lines)
