"""``leptonkit keys``: create, list and revoke the API keys a server accepts."""

from __future__ import annotations

import typer

from leptonkit.cli.output import JSON_OPTION, console, print_json, print_table

app = typer.Typer(help="API keys for the server (stored as salted hashes in the registry database).")


def _store():
    from leptonkit.security.keys import KeyStore

    return KeyStore()


def _audit(event: str, **fields: str) -> None:
    from leptonkit.security.audit import AuditLog

    AuditLog().write(event, actor="cli", **fields)


@app.command()
def create(
    name: str = typer.Option(..., "--name", help="A unique name for the key (who or what uses it)."),
    scope: str = typer.Option("inference", "--scope", help="inference (model routes) or admin (adapter load/unload)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a key and print it once: it is not stored and cannot be shown again."""
    record, key = _store().create(name, scope)
    _audit("key_created", key=record.name, scope=record.scope)
    if json_out:
        print_json({"name": record.name, "scope": record.scope, "key": key})
    else:
        console.print(f"created {record.scope} key [bold]{record.name}[/bold]; store it now, it is shown only once:")
        typer.echo(key)


@app.command("list")
def list_keys(
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."), json_out: bool = JSON_OPTION
) -> None:
    """List keys by name and scope (never the keys themselves)."""
    keys = _store().list(include_revoked=all_keys)
    if json_out:
        print_json([k.to_dict() for k in keys])
    else:
        print_table(
            "API keys",
            ["name", "scope", "created", "revoked"],
            [[k.name, k.scope, k.created_at, k.revoked_at] for k in keys],
        )


@app.command()
def revoke(name: str = typer.Argument(..., help="The key's name."), json_out: bool = JSON_OPTION) -> None:
    """Revoke a key; a running server refuses it from its next request on."""
    record = _store().revoke(name)
    _audit("key_revoked", key=record.name, scope=record.scope)
    if json_out:
        print_json(record.to_dict())
    else:
        console.print(f"revoked key {record.name}")
