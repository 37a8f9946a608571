"""scripts/sweep_log.py: the first and last windows of each PPO log of a run, by hand."""

from pathlib import Path

from tiny_hf import load_script



def _script():
    return load_script("sweep_log")


def _log(folder: Path, rows):
    folder.mkdir(parents=True)
    lines = ["update,score_raw,gold,kl"] + [",".join(str(x) for x in r) for r in rows]
    (folder / "log.csv").write_text("\n".join(lines) + "\n")


def test_sweep_log_windows(tmp_path, capsys):
    _log(tmp_path / "ppo", [(0, 0.0, 0.6, 0.0), (1, 0.2, 0.5, 1.0), (2, 0.4, 0.4, 2.0), (3, 0.6, 0.3, 4.0)])
    _log(tmp_path / "sweeps" / "ppo_beta_0.0", [(0, 0.0, 0.6, 0.0), (1, 1.0, 0.2, 9.0)])
    (tmp_path / "sweeps" / "ppo_beta_0.0.stage.json").write_text("{}")  # not a run folder
    (tmp_path / "sweeps" / "ppo_beta_0.1").mkdir()  # still running: no log yet
    (tmp_path / "sweeps" / "ppo_beta_0.1.checkpoint").mkdir()  # its resumable state, not a run
    assert _script().main([str(tmp_path), "--window", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| ppo | 4 | 0.100 | 0.500 | 0.550 | 0.350 | 0.50 | 3.00 |"
    assert out[3] == "| ppo_beta_0.0 | 2 | 0.500 | 0.500 | 0.400 | 0.400 | 4.50 | 4.50 |"
    assert out[4].startswith("| ppo_beta_0.1 | (no log.csv yet)") and len(out) == 5
