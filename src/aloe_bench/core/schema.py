"""The published dataset's schema: one `datasets.Features` per config, shared by every producer and reader.

Configs of the Hub dataset repo (`<config>/<split>-00000-of-00001.parquet` + README.md with YAML `configs`):
- `personas`      (train/test)  one row per persona; `test` is the eval set, `train` the training pool pairs;
- `conversations` (train)       one row per conversation tree with every turn's pair, verdict and provenance;
- `sft`           (train/test)  conversational prompt (history + user message) -> completion (the preferred reply);
- `dpo`           (train/test)  conversational prompt -> chosen / rejected single assistant messages.
"""

from __future__ import annotations

from datasets import Features, List, Value

MESSAGE = {"role": Value("string"), "content": Value("string")}

PERSONAS = Features({
    "id": Value("string"),
    "profile_id": Value("string"),
    "profile": Value("string"),
    "personality_id": Value("string"),
    "personality": Value("string"),
})

TURN = {
    "turn": Value("int32"),
    "user_message": Value("string"),
    "revealed_profile": Value("string"),
    "revealed_personality": Value("string"),
    "preferred": Value("string"),       # reply of the responder that saw the revealed facts
    "rejected": Value("string"),        # reply of the responder that saw only the message
    "judge_choice": Value("string"),    # "preferred" or "rejected": which one the pair judge picked
    "judge_raw": Value("string"),
    "continued_with": Value("string"),  # "preferred" or "rejected": the branch the conversation followed
    "preferred_position": Value("string"),  # "A" or "B": where the pair judge was shown the preferred reply
    "error": Value("string"),           # null, or what failed in this turn after retries (e.g. the pair judge)
    # pair order "both": the judge asked again with the replies swapped (null when it was asked once)
    "judge_choice_swapped": Value("string"),
    "judge_raw_swapped": Value("string"),
    "order_tie": Value("bool"),         # the two orders named different replies: no pair (judge_choice null)
}

CONVERSATIONS = Features({
    "id": Value("string"),
    "persona_id": Value("string"),
    "profile": Value("string"),
    "personality": Value("string"),
    "turns": List(TURN),
    "models": Value("string"),          # JSON: model spec per role
    "prompt_sha256": Value("string"),   # JSON: prompt name -> hash
    "seed": Value("int64"),
    "error": Value("string"),           # null, or why the conversation stopped before its last turn
})

SFT = Features({
    "prompt": List(MESSAGE),
    "completion": List(MESSAGE),
    "persona_id": Value("string"),
    "conversation_id": Value("string"),
    "turn": Value("int32"),
})

DPO = Features({
    "prompt": List(MESSAGE),
    "chosen": List(MESSAGE),
    "rejected": List(MESSAGE),
    "persona_id": Value("string"),
    "conversation_id": Value("string"),
    "turn": Value("int32"),
})

CONFIGS = {"personas": PERSONAS, "conversations": CONVERSATIONS, "sft": SFT, "dpo": DPO}
