"""``leptonkit pretrain`` (a causal LM from raw text) and ``leptonkit generate`` (a quick look at a generator)."""

from __future__ import annotations

from pathlib import Path

import typer

from leptonkit.cli.launch import (
    FSDP_OPTION,
    MASTER_ADDR_OPTION,
    MASTER_PORT_OPTION,
    NNODES_OPTION,
    NODE_RANK_OPTION,
    NPROC_OPTION,
    Launch,
    relaunch_if_distributed,
)
from leptonkit.cli.output import JSON_OPTION, console, print_json, print_table
from leptonkit.errors import InvalidInputError


def pretrain(
    data: list[Path] = typer.Option(None, "--data", help="Text files (repeat --data); <|endoftext|> splits documents."),
    name: str = typer.Option(None, "--name", help="Registry name of the trained model."),
    preset: str = typer.Option("tiny", "--preset", help="Model size: tiny (~17M), small (~60M) or base (~119M)."),
    base: str | None = typer.Option(None, "--base", help="Continue this registered model instead of a new one."),
    objective: str = typer.Option("clm", "--objective", help="clm (causal LM) or mlm (masked LM, needs --base)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Reuse this model's tokenizer (REF or folder)."),
    vocab_size: int = typer.Option(8192, "--vocab-size", help="Vocabulary of the BPE tokenizer trained here."),
    block_size: int | None = typer.Option(None, "--block-size", help="Tokens per training block (default: context)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop cleanly after this many minutes."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the corpus (default 3)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Blocks per micro-batch."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 1e-3, 2e-4 with --base)."),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Evaluate every N steps (default: per epoch)."),
    resume: str | None = typer.Option(None, "--resume", help="Resume a run folder or checkpoint exactly."),
    run_dir: str | None = typer.Option(None, "--run-dir", help="Run folder (default: LEPTONKIT_HOME/runs/...)."),
    overrides: list[str] = typer.Option(None, "--set", help="Recipe overrides, e.g. --set train.grad_accum=4."),
    list_presets: bool = typer.Option(False, "--list-presets", help="Print the presets' sizes and exit."),
    nproc: int = NPROC_OPTION,
    nnodes: int = NNODES_OPTION,
    node_rank: int = NODE_RANK_OPTION,
    master_addr: str | None = MASTER_ADDR_OPTION,
    master_port: int | None = MASTER_PORT_OPTION,
    fsdp: bool = FSDP_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Pretrain a causal LM on raw text (tokenizer, preset model, packing, training, evaluation, registry)."""
    if list_presets:
        from leptonkit.train.presets import describe_presets

        rows = describe_presets(vocab_size)
        if json_out:
            print_json(rows)
        else:
            keys = ["preset", "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"]
            print_table(
                f"presets (vocabulary {vocab_size:,})",
                ["preset", "layers", "hidden", "heads", "mlp", "context", "parameters"],
                [[r[k] for k in keys] + [r["max_position_embeddings"], f"{r['parameters']:,}"] for r in rows],
            )
        return
    if not data or not name:
        raise InvalidInputError("pretrain needs --data FILE and --name NAME", hint="see leptonkit pretrain --help")
    relaunch_if_distributed(Launch(nproc, nnodes, node_rank, master_addr, master_port))
    from leptonkit.train.api import pretrain as run

    version = run(
        [str(p) for p in data],
        name=name,
        preset=preset,
        base=base,
        objective=objective,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        block_size=block_size,
        run_dir=run_dir,
        overrides=overrides,
        resume=resume,
        max_steps=max_steps,
        max_minutes=max_minutes,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        eval_every=eval_every,
        fsdp=fsdp or None,
    )
    if version is None:  # ranks other than 0 under torchrun
        return
    if json_out:
        print_json(version.to_dict() | {"metrics": version.metrics, "lineage": version.lineage})
        return
    training, valid = version.metrics.get("training", {}), version.metrics.get("valid", {})
    console.print(
        f"[bold]{version.ref}[/bold]: {training.get('status')} after {training.get('steps')} steps; "
        + ", ".join(f"{k} {v:.4f}" for k, v in valid.items())
    )


def generate(
    ref: str = typer.Argument(..., help="Model reference (NAME, NAME:VERSION, NAME@ALIAS) or folder."),
    prompt: str = typer.Argument(..., help="Text to continue (or, with --chat, the user's message)."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Most tokens to generate."),
    temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature; 0 decodes greedily."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed, for repeatable samples."),
    chat: bool = typer.Option(False, "--chat", help="Format the prompt as a user turn with the chat template."),
    explain: bool = typer.Option(False, "--explain", help="Show each token's probability and the runners-up."),
    alternatives: int = typer.Option(3, "--alternatives", help="Runners-up shown per token with --explain."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Sample a continuation from a causal LM."""
    from leptonkit.registry.loading import load_model
    from leptonkit.train.sampling import generate as sample

    loaded = load_model(ref)
    if loaded.task != "generation":
        raise InvalidInputError(
            f"{ref} is a {loaded.task or 'non-generative'} model", hint="give a causal LM (task generation)"
        )
    result = sample(
        loaded.model,
        loaded.tokenizer,
        prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        chat=chat,
        explain=alternatives if explain else 0,
    )
    if json_out:
        print_json(result)
        return
    console.print(f"[bold]{prompt}[/bold]{result['text']}", highlight=False, markup=True)
    if explain:
        rows = [
            [
                repr(step["token"]),
                f"{step['prob']:.3f}",
                ", ".join(f"{r['token']!r} {r['prob']:.3f}" for r in step["runners_up"]),
            ]
            for step in result["tokens"]
        ]
        print_table("tokens", ["token", "prob", "runners-up"], rows)
