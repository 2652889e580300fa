"""Model card records and Hub uploads of `aloe train online`.

Each round's checkpoint gets the run record every `aloe train` stage writes (`aloe_training.json`, read by the model
card: the stage, the true Hub base model, the round's data, LoRA) and the recipe as run. `--push_to_hub ORG/NAME`
uploads the final checkpoint with the project's model card (`card.build_push_folder`), whose extra section lists
every round (`online.rounds_card_section`); `--push_rounds_data` also uploads every round's data as one dataset
repo `ORG/NAME-rounds`, one config per round (`round-01`, ...), built on disk first and loadable with `load_dataset`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

from aloe_bench.core.io import atomic_write_text

ROUNDS_DATA_DIR = "hub-rounds-data"


def write_round_record(cfg, round_no: int, checkpoint: Path, policy_path: str, base_model: str | None,
                       data_folder: Path, data: dict, metrics: dict) -> None:
    """The round checkpoint's `aloe_training.json` and recipe, as the other stages write them."""
    from .common import write_run_info

    ipo = cfg.method == "ipo"
    info = {"stage": "dpo" if ipo else cfg.method, "loss_type": ["ipo"] if ipo else None,
            "beta": cfg.beta, "base_model": base_model, "parent_model": policy_path, "dataset": str(data_folder),
            "dataset_config": data["config"], "lora": bool(cfg.use_peft),
            "train_rows": data.get("pairs", data.get("rows")), "metrics": metrics, "online_round": round_no}
    write_run_info(str(checkpoint), info, asdict(cfg))


def rounds_data_folder(out: Path, table: list[dict]) -> Path:
    """`out/hub-rounds-data/`: every trained round's data as config `round-NN` (its parquet and counts), with a
    README whose YAML names each config, so `load_dataset(folder, "round-01")` reads round 1."""
    target = Path(out) / ROUNDS_DATA_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    configs, lines = [], []
    for entry in table:
        if not entry["round"]:
            continue
        name = f"round-{entry['round']:02d}"
        source = Path(out) / name / "data"
        config = entry["data"]["config"]
        (target / name).mkdir()
        for parquet in sorted((source / config).glob("*.parquet")):
            try:
                os.link(parquet, target / name / parquet.name)
            except OSError:
                shutil.copy2(parquet, target / name / parquet.name)
        shutil.copy2(source / "aloe_round_data.json", target / name / "aloe_round_data.json")
        configs.append(f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train-*.parquet\n")
        counts = entry["data"]
        lines.append(f"| {entry['round']} | `{name}` | {config} | {counts.get('pairs', counts.get('rows'))} |")
    atomic_write_text(target / "README.md", "---\nconfigs:\n" + "".join(configs) + "tags:\n- aloe\n---\n\n"
                      "# Online preference rounds (`aloe train online`)\n\n"
                      "Each round's training data: the policy's own candidate replies in conversations with the "
                      "role-play user, scored by the ALOE judge (`dpo`: best vs the policy's own worst; `kto`: "
                      "each judged reply with its label). Counts of dropped ties and failures are in each round's "
                      "`aloe_round_data.json`.\n\n| round | config | kind | rows |\n|---|---|---|---|\n"
                      + "\n".join(lines) + "\n")
    return target


def push_online(cfg, table: list[dict], out: Path, card_section: str) -> dict:
    """Upload the final checkpoint with its card (and, when asked, the rounds' data); return the commit URLs.

    The token comes from HF_TOKEN or the cached login (never from the recipe, never printed)."""
    from aloe_bench.core.hub_upload import upload_folder_once

    from .card import build_push_folder

    final = Path(table[-1]["checkpoint"])
    eval_source = Path(out) / f"round-{table[-1]['round']:02d}" / "eval"
    has_eval = eval_source.is_dir() and any(eval_source.rglob("results_*.json"))
    folder = build_push_folder(final, repo_id=cfg.push_to_hub, eval_source=eval_source if has_eval else None,
                               extra=card_section)
    token = os.environ.get("HF_TOKEN") or None
    urls = {"model": upload_folder_once(folder, cfg.push_to_hub, repo_type="model", private=cfg.private,
                                        token=token, commit_message=f"Upload ALOE online rounds "
                                        f"({len([e for e in table if e['round']])} rounds, {cfg.method})")}
    if cfg.push_rounds_data:
        data = rounds_data_folder(out, table)
        urls["data"] = upload_folder_once(data, f"{cfg.push_to_hub}-rounds", repo_type="dataset",
                                          private=cfg.private, token=token,
                                          commit_message="Upload the data of every online round")
    return urls

