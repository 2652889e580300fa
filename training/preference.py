"""The preference stage from an SFT checkpoint: DPO (default), IPO (DPO's `loss_type: ipo`) or KTO, with TRL.

After training, the held-out `test` pairs are scored under the trained policy and its reference (the model it
started from): implicit rewards beta * (log pi(y|x) - log pi_ref(y|x)) and the raw log-prob margins of both.
"""

from __future__ import annotations

from pathlib import Path

from aloe_bench.core.io import atomic_write_json

from .common import (
    AloeArguments,
    TrainingDataError,
    head,
    load_split,
    prepare_run,
    require_columns,
    run_record,
    train_and_save,
    write_run_info,
)

PREFERENCE_EVAL_FILE = "aloe_preference_eval.json"


def preference_splits(script, aloe: AloeArguments):
    """The dpo config's train and (if present) test splits as prompt/chosen/rejected rows."""
    config = script.dataset_config or "dpo"
    columns = ["prompt", "chosen", "rejected"]
    train = load_split(script.dataset_name, config, script.dataset_train_split)
    require_columns(train, columns, f"{script.dataset_name} [{config}/{script.dataset_train_split}]")
    train = head(train.select_columns(columns), aloe.max_train_samples)
    try:
        test = load_split(script.dataset_name, config, script.dataset_test_split)
    except TrainingDataError:
        return train, None
    require_columns(test, columns, f"{script.dataset_name} [{config}/{script.dataset_test_split}]")
    return train, head(test.select_columns(columns), aloe.max_eval_samples)


def _completion_ids(tokenizer, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the chat-formatted prompt and of the completion that follows it."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template does not render the prompt as a prefix of prompt + completion")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return prompt_ids, completion_ids


def sequence_logps(model, tokenizer, prompts, completions, batch_size: int = 4) -> list[float]:
    """Summed log-probability of each completion given its prompt (teacher forcing, no truncation)."""
    import torch

    pairs = [_completion_ids(tokenizer, p, c) for p, c in zip(prompts, completions)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[float] = []
    model.eval()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        width = max(len(p) + len(c) for p, c in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        target = torch.zeros_like(ids, dtype=torch.bool)
        for i, (p, c) in enumerate(chunk):
            ids[i, :len(p) + len(c)] = torch.tensor(p + c)
            attention[i, :len(p) + len(c)] = 1
            target[i, len(p):len(p) + len(c)] = True
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        token_lp = logprobs.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        out += (token_lp * target[:, 1:].to(device)).sum(-1).tolist()
    return out


def preference_eval(policy_path: str, reference_path: str, pairs, beta: float, batch_size: int = 4) -> dict:
    """Held-out preference accuracy and margins of a policy against its reference (and of the reference itself).

    The reference's implicit reward is 0 by definition, so the honest comparison is the raw log-prob margin
    logp(chosen) - logp(rejected) of each model, reported next to the policy's implicit-reward numbers.
    """
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    logps = {}
    for name, path in (("policy", policy_path), ("reference", reference_path)):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        logps[name] = {k: np.array(sequence_logps(model, tokenizer, pairs["prompt"], pairs[k], batch_size))
                       for k in ("chosen", "rejected")}
        del model
    pol, ref = logps["policy"], logps["reference"]
    reward_chosen = beta * (pol["chosen"] - ref["chosen"])
    reward_rejected = beta * (pol["rejected"] - ref["rejected"])

    def logp_summary(side):
        margin = side["chosen"] - side["rejected"]
        return {"logp_accuracy": float((margin > 0).mean()), "logp_margin": float(margin.mean()),
                "logp_chosen": float(side["chosen"].mean()), "logp_rejected": float(side["rejected"].mean())}

    return {
        "pairs": len(pairs), "beta": beta, "policy": policy_path, "reference": reference_path,
        "policy_rewards": {"accuracy": float((reward_chosen > reward_rejected).mean()),
                           "margin": float((reward_chosen - reward_rejected).mean()),
                           "chosen": float(reward_chosen.mean()), "rejected": float(reward_rejected.mean())},
        "reference_rewards": {"accuracy": 0.0, "margin": 0.0, "note": "zero by definition (policy == reference)"},
        "policy_raw": logp_summary(pol),
        "reference_raw": logp_summary(ref),
        "improved": bool(logp_summary(pol)["logp_margin"] > logp_summary(ref)["logp_margin"]),
    }


def print_preference_eval(result: dict) -> None:
    pol, ref = result["policy_raw"], result["reference_raw"]
    print(f"[held-out pairs: {result['pairs']}] implicit-reward accuracy {result['policy_rewards']['accuracy']:.3f}, "
          f"mean reward margin {result['policy_rewards']['margin']:+.4f} (reference: 0 by definition)")
    print(f"  log-prob margin chosen-rejected: policy {pol['logp_margin']:+.3f} (acc {pol['logp_accuracy']:.3f}) vs "
          f"reference {ref['logp_margin']:+.3f} (acc {ref['logp_accuracy']:.3f})", flush=True)


def run_preference(script, aloe: AloeArguments, training_args, model_args, method: str = "dpo",
                   recipe: dict | None = None) -> dict:
    """Train DPO/IPO (DPOTrainer) or KTO (KTOTrainer on unpaired desirable/undesirable rows) and save the result."""
    from trl import DPOTrainer, KTOTrainer, unpair_preference_dataset

    model_path, base_model = prepare_run(aloe, training_args, model_args)
    train, test = preference_splits(script, aloe)
    if method == "kto":
        trainer_cls = KTOTrainer
        train_data = unpair_preference_dataset(train)
        eval_data = unpair_preference_dataset(test) if test is not None else None
    else:
        trainer_cls = DPOTrainer
        train_data, eval_data = train, test
    # TRL's own batch-mean rewards on the test rows ("trl_eval"): a cross-check of the preference eval below
    metrics = train_and_save(method, trainer_cls, model_path, train_data, eval_data, training_args, model_args, aloe,
                             eval_key="trl_eval")
    loss_type = getattr(training_args, "loss_type", None)
    info = run_record(method, base_model, script, script.dataset_config or "dpo", model_args, train, metrics,
                      loss_type=loss_type, beta=training_args.beta)
    if test is not None and len(test) and (not model_args.use_peft or aloe.merge_lora):
        evaluation = preference_eval(training_args.output_dir, model_path, test, training_args.beta,
                                     batch_size=training_args.per_device_eval_batch_size)
        atomic_write_json(Path(training_args.output_dir, PREFERENCE_EVAL_FILE), evaluation)
        info["preference_eval"] = evaluation
        print_preference_eval(evaluation)
    write_run_info(training_args.output_dir, info, recipe)
    return info
