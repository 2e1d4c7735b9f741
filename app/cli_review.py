"""`livewatch review` (the review web app) and `livewatch evidence export|verify` (evidence packages).

`review` serves until interrupted (uvicorn, one process). `--create-user NAME` and `--create-token NAME`
only print a config snippet and exit: passwords and tokens are never stored in clear.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from app.cli import ConfigOpt, DataDirOpt, UsageError, err, open_store

__all__ = ["evidence_app", "review_command"]


def review_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default review.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Listen port (default review.port, 8765).")
    ] = None,
    create_user: Annotated[
        str | None,
        typer.Option("--create-user", help="Ask for a password and print a review.users entry; no server."),
    ] = None,
    create_token: Annotated[
        str | None,
        typer.Option("--create-token", help="Print a new API token and its review.api_tokens entry."),
    ] = None,
) -> None:
    """Serve the review web app: alert queue, clip player, decisions, statistics, evidence packages."""
    from review.auth import hash_password, hash_token, new_token

    if create_user is not None:
        from review.config import ReviewUser

        password = typer.prompt(
            f"password for {create_user}", hide_input=True, confirmation_prompt=True, err=True
        )
        if len(password) < 8:
            raise UsageError("--create-user: use a password of at least 8 characters")
        user = ReviewUser(username=create_user, password_hash=hash_password(password))
        err.print("add this under review.users in the config:")
        sys.stdout.write(f"    - username: {user.username}\n      password_hash: '{user.password_hash}'\n")
        return
    if create_token is not None:
        token = new_token()
        err.print("give the token to its user (it is shown once); add the entry under review.api_tokens:")
        sys.stdout.write(f"token: {token}\n    - name: {create_token}\n      sha256: {hash_token(token)}\n")
        return

    import uvicorn

    from app import __version__
    from review.app import create_app, env_token

    cfg, db, ddir = open_store(config, data_dir)
    rcfg = cfg.review
    api_token = env_token()
    if not rcfg.users and not rcfg.api_tokens and not api_token:
        raise UsageError(
            "review: no users or API tokens are configured; make a user with "
            "`livewatch review --create-user NAME` and add it under review.users in the config"
        )
    app = create_app(db, ddir, rcfg, tool_version=__version__, env_token=api_token)
    bind_host = host or rcfg.host
    bind_port = port or rcfg.port
    if bind_host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]review: listening on {bind_host}; serve it over HTTPS (a proxy) and set "
            "review.cookie_secure[/yellow]"
        )
    err.print(f"livewatch review on http://{bind_host}:{bind_port}/  (data: {ddir})")
    # proxy headers are read by the app only from configured trusted proxies (review.trusted_proxies);
    # uvicorn's own handling would trust X-Forwarded-For from any local client
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning", proxy_headers=False)


evidence_app = typer.Typer(
    help="Evidence packages: export an alert as a zip, verify a zip's hashes.", no_args_is_help=True
)


@evidence_app.command("export")
def export(
    alert_id: Annotated[str, typer.Argument(help="The alert's id.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Zip path or folder (default: current folder).")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who exports (recorded in the package).")] = "",
) -> None:
    """Write an alert's evidence package (clip, snapshot, transcript, decisions, summary, hashes)."""
    import getpass

    from app import __version__
    from review.detail import PackageNotAvailable, export_package

    cfg, db, _ = open_store(config, data_dir)
    dest = out if out is not None else Path.cwd()
    if dest.suffix.lower() != ".zip":
        dest = dest / f"livewatch-evidence-{alert_id}.zip"
    with db.session() as s:
        try:
            result = export_package(
                s,
                alert_id,
                dest,
                exported_by=by or getpass.getuser(),
                tool_version=__version__,
                timezone=cfg.review.timezone,
            )
        except KeyError:
            raise UsageError(f"evidence export: no alert with id {alert_id}") from None
        except PackageNotAvailable as e:
            raise UsageError(f"evidence export: {e}") from None
    sys.stdout.write(f"{result.path}\n")
    err.print(f"manifest SHA-256 {result.manifest_sha256}  (record it in the case file)")
    err.print(f"zip SHA-256      {result.zip_sha256}")


@evidence_app.command("verify")
def verify(
    package: Annotated[Path, typer.Argument(help="An evidence package zip.")],
    manifest_sha256: Annotated[
        str | None, typer.Option("--manifest-sha256", help="The manifest hash recorded in the case file.")
    ] = None,
) -> None:
    """Check every file of a package against its hashes; name each file that changed. Exit 1 if any did."""
    from alerts.package import verify_package

    if not package.is_file():
        raise UsageError(f"{package}: no such file")
    report = verify_package(package, manifest_sha256)
    for c in report.checks:
        line = f"{c.status.upper():10} {c.name}"
        if c.status != "ok":
            line += f"  (expected {c.expected_sha256 or '-'}, got {c.actual_sha256 or '-'}"
            line += f"; {c.detail})" if c.detail else ")"
        sys.stdout.write(line + "\n")
    for p in report.problems:
        sys.stdout.write(f"PROBLEM    {p}\n")
    if report.manifest_sha256:
        sys.stdout.write(f"manifest SHA-256 {report.manifest_sha256}\n")
    if report.ok:
        sys.stdout.write(f"OK: all {len(report.checks)} files match (alert {report.alert_id})\n")
        return
    sys.stdout.write(f"FAILED: {', '.join(report.named_files)} changed or damaged\n")
    raise typer.Exit(1)
