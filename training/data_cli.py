"""Data subcommands: `aloe personas grow|overlap`, `aloe generate`, `aloe dataset build|push`."""

from __future__ import annotations

import json


def _actions(sub, name: str, help: str):
    """`aloe NAME ACTION ...`: a subcommand whose own subcommands are its actions (recipe-aware like every level)."""
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def register(sub) -> None:
    from aloe_bench.core.recipes import add_recipe_command

    from aloe_bench.core.backends import BackendOptions

    from .generate import GenerateConfig
    from .personas import GrowConfig

    personas_sub = _actions(sub, "personas", "Persona pools: grow one by self-generation, compare two.")
    add_recipe_command(personas_sub, "grow", [GrowConfig, BackendOptions], _grow,
                       "Expand a profile or personality pool by self-generation with embedding de-duplication.")
    overlap = personas_sub.add_parser("overlap", help="Closest pairs between two pools (e.g. eval vs training).")
    overlap.add_argument("a", help="Pool file (.jsonl) or folder of pools, or 'default' for the packaged eval set.")
    overlap.add_argument("b", help="Second pool file or folder, or 'seeds' for the packaged training seeds.")
    overlap.add_argument("--top", type=int, default=10)
    overlap.add_argument("--embedder", default=None, help="sentence-transformers model (default: bundled MiniLM).")
    overlap.add_argument("--threshold", type=float, default=0.6, help="Exit 1 when any pair is above it.")
    overlap.set_defaults(handler=_overlap)

    add_recipe_command(sub, "generate", [GenerateConfig, BackendOptions], _generate,
                       "Generate preference conversation trees (multi-LLM collaboration), resumable.")

    dataset_sub = _actions(sub, "dataset", "Build the Hub dataset folder from generated conversations; push it.")
    add_recipe_command(dataset_sub, "build", _build_types, _build,
                       "Write the dataset repo folder (personas, conversations, sft, dpo + card).")
    push = dataset_sub.add_parser("push", help="Upload a built dataset folder in one commit (token from HF_TOKEN).")
    push.add_argument("folder")
    push.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="ORG/NAME")
    push.add_argument("--private", action="store_true")
    push.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    push.set_defaults(handler=_push)


def _grow(args) -> int:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.recipes import dataclass_from_args

    from .personas import GrowConfig, grow_pool

    summary = grow_pool(dataclass_from_args(args, GrowConfig), options=dataclass_from_args(args, BackendOptions))
    summary.pop("config", None)
    print(json.dumps(summary, indent=2))
    return 0


def _resolve_pool(source: str, prefix: str):
    from aloe_bench.core.personas import packaged_data, read_pool

    from .personas import read_any_pool

    if source == "default":
        return (read_pool(packaged_data("eval_profiles.jsonl"), "eval-profile:")
                + read_pool(packaged_data("eval_personalities.jsonl"), "eval-personality:"))
    if source == "seeds":
        return (read_pool(packaged_data("seed_profiles.jsonl"), "seed-profile:")
                + read_pool(packaged_data("seed_personalities.jsonl"), "seed-personality:"))
    return read_any_pool(source, prefix)


def _overlap(args) -> int:
    from .personas import load_embedder, pool_overlap

    a, b = _resolve_pool(args.a, "a:"), _resolve_pool(args.b, "b:")
    report = pool_overlap(a, b, load_embedder(args.embedder), top=args.top)
    report["threshold"] = args.threshold
    report["pairs_above_threshold"] = sum(p["similarity"] > args.threshold for p in report["closest_pairs"])
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 1 if report["max_similarity"] > args.threshold else 0


def _generate(args) -> int:
    from aloe_bench.core.backends import BackendOptions
    from aloe_bench.core.recipes import dataclass_from_args

    from .generate import GenerateConfig, generate_conversations

    results = generate_conversations(dataclass_from_args(args, GenerateConfig),
                                     options=dataclass_from_args(args, BackendOptions))
    print(json.dumps(results, indent=2))
    return 0


def _build_types() -> list:
    """`aloe dataset build`'s recipe dataclass, loaded when that command is parsed (its module imports `datasets`)."""
    from .dataset import BuildConfig

    return [BuildConfig]


def _build(args) -> int:
    from aloe_bench.core.recipes import dataclass_from_args

    from .dataset import BuildConfig, build_dataset

    summary = build_dataset(dataclass_from_args(args, BuildConfig))
    print(json.dumps(summary, indent=2))
    return 0


def _push(args) -> int:
    from .dataset import push_dataset

    url = push_dataset(args.folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(json.dumps({"repo_id": args.repo_id, "commit": url}))
    return 0
