"""`livewatch review` (the review web app) and `livewatch evidence export|verify|pubkey` (evidence packages).

Packages are signed with the site's Ed25519 key in the data directory (made on first use);
`evidence pubkey` prints its public half for whoever will verify packages elsewhere.

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
    app = create_app(
        db,
        ddir,
        rcfg,
        tool_version=__version__,
        env_token=api_token,
        verify_interval_s=cfg.evidence.verify_interval_s,
    )
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
    help="Evidence packages: export an alert as a signed zip, verify a zip's hashes and signature, "
    "print the site's public key.",
    no_args_is_help=True,
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

    from alerts.signing import load_or_create_site_key
    from app import __version__
    from review.detail import PackageNotAvailable, export_package

    cfg, db, ddir = open_store(config, data_dir)
    site_key = load_or_create_site_key(ddir)
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
                signing_key=site_key,
                data_dir=ddir,
            )
        except KeyError:
            raise UsageError(f"evidence export: no alert with id {alert_id}") from None
        except PackageNotAvailable as e:
            raise UsageError(f"evidence export: {e}") from None
    sys.stdout.write(f"{result.path}\n")
    err.print(f"manifest SHA-256 {result.manifest_sha256}  (record it in the case file)")
    err.print(f"zip SHA-256      {result.zip_sha256}")
    err.print(f"signed with site key {site_key.fingerprint}", soft_wrap=True)


@evidence_app.command("verify")
def verify(
    package: Annotated[Path, typer.Argument(help="An evidence package zip.")],
    manifest_sha256: Annotated[
        str | None, typer.Option("--manifest-sha256", help="The manifest hash recorded in the case file.")
    ] = None,
    pubkey: Annotated[
        list[Path] | None,
        typer.Option(
            "--pubkey",
            help="A site public key to trust (from `livewatch evidence pubkey`; repeatable). "
            "Default: the key of the data directory, if it has one.",
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check every file of a package against its hashes and its signature against the site key; name
    each file that changed and the key that signed it. Exit 1 unless all match and the signer is trusted."""
    from alerts.package import verify_package
    from alerts.signing import fingerprint, load_public_key, site_public_key

    if not package.is_file():
        raise UsageError(f"{package}: no such file")
    trusted: list[bytes] | None = None
    trusted_from = ""
    if pubkey:
        trusted = []
        for key_file in pubkey:
            try:
                trusted.append(load_public_key(key_file))
            except (OSError, ValueError) as e:
                raise UsageError(f"--pubkey {key_file}: not an Ed25519 public key ({e})") from None
        trusted_from = ", ".join(str(k) for k in pubkey)
    else:
        from app.config import load_config

        ddir = load_config(config).resolved_data_dir(data_dir)
        own = site_public_key(ddir)
        if own is not None:
            trusted, trusted_from = [own], f"the site key of {ddir}"
    report = verify_package(package, manifest_sha256, trusted_keys=trusted)
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
    sig = report.signature
    if sig is not None:
        if sig.status == "unsigned":
            sys.stdout.write("signature  NONE: the package is unsigned\n")
        elif sig.status == "invalid":
            sys.stdout.write(f"signature  INVALID ({sig.detail}); key {sig.key_fingerprint or '-'}\n")
        elif sig.trusted:
            sys.stdout.write(f"signature  valid, signed by {sig.key_fingerprint} (trusted: {trusted_from})\n")
        elif sig.trusted is False:
            keys = ", ".join(fingerprint(k) for k in trusted or [])
            sys.stdout.write(
                f"signature  valid, but signed by {sig.key_fingerprint}, NOT the trusted key {keys} "
                f"({trusted_from})\n"
            )
        else:
            sys.stdout.write(
                f"signature  valid, signed by {sig.key_fingerprint}; no trusted key to check it against "
                "(--pubkey FILE)\n"
            )
    csig = report.capture_signature
    if csig is not None:
        if csig.status == "unsigned":
            sys.stdout.write("capture    manifest unsigned (evidence captured before manifests were signed)\n")
        elif csig.status == "invalid":
            sys.stdout.write(f"capture    manifest signature INVALID ({csig.detail})\n")
        else:
            note = "" if csig.trusted is not False else ", not the key that signed the package"
            sys.stdout.write(f"capture    manifest signed by {csig.key_fingerprint}{note}\n")
    if report.ok:
        how = (
            f"signed by trusted key {sig.key_fingerprint}"
            if sig is not None and sig.trusted
            else "manifest matches the case file's hash"
        )
        sys.stdout.write(f"OK: all {len(report.checks)} files match, {how} (alert {report.alert_id})\n")
        return
    damaged = list(
        dict.fromkeys(
            [
                *report.bad_files,
                *(p.split(":", 1)[0] for p in report.problems if p != report.signature_problem),
            ]
        )
    )
    if damaged:
        sys.stdout.write(f"FAILED: {', '.join(damaged)} changed or damaged\n")
    if report.signature_problem:
        sys.stdout.write(f"NOT VERIFIED: {report.signature_problem.split(': ', 1)[-1]}\n")
    raise typer.Exit(1)


@evidence_app.command("verify-store")
def verify_store_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Re-hash every evidence file in the store against its recorded SHA-256, check each capture
    manifest's signature, and store the results (shown in the queue, the alert page and /metrics).
    Prints each file that is not ok; exit 1 if any file is missing or changed or a signature is invalid."""
    from review.evidence_checks import verify_store

    _cfg, db, ddir = open_store(config, data_dir)
    result = verify_store(db, ddir)
    for alert_id, name, state in result.bad:
        sys.stdout.write(f"{state.upper():10} {alert_id}/{name}\n")
    counts = ", ".join(f"{result.states.get(k, 0)} {k}" for k in ("ok", "changed", "missing"))
    sigs = ", ".join(f"{v} {k}" for k, v in sorted(result.signatures.items())) or "none"
    sys.stdout.write(
        f"{'OK' if result.ok else 'FAILED'}: {result.files} files of {result.alerts} alerts: {counts}; "
        f"manifest signatures: {sigs}\n"
    )
    if not result.ok:
        raise typer.Exit(1)


@evidence_app.command("pubkey")
def pubkey_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the PEM here instead of stdout.")
    ] = None,
) -> None:
    """Print the site's public signing key (PEM), made on first use; give it to whoever verifies packages."""
    from alerts.signing import load_or_create_site_key
    from app.config import load_config

    ddir = load_config(config).resolved_data_dir(data_dir)
    key = load_or_create_site_key(ddir)
    if out is not None:
        out.write_bytes(key.public_pem())
        sys.stdout.write(f"{out}\n")
    else:
        sys.stdout.write(key.public_pem().decode("ascii"))
    err.print(f"site key {key.fingerprint}  ({key.path})", soft_wrap=True)
