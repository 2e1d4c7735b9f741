"""`livewatch prices`: import known prices, list the claim history.

`livewatch prices import FILE` loads a CSV (header product, price, date[, source]) or a JSON list of the
same fields; a date without a zone is read in the price config's timezone (Asia/Shanghai by default).
`livewatch prices list [--stream ID]` prints the stored claims as a table (or JSON lines).
Bad input exits with code 2 and one line naming the file and line.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["prices_app"]

prices_app = typer.Typer(
    help="Price claims (what hosts said about prices) and reference prices imported from outside.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Root config YAML.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default $LIVEWATCH_DATA_DIR or ./livewatch-data)."),
]
PriceConfigOpt = Annotated[
    Path | None, typer.Option("--price-config", help="Price checks YAML (configs/price.yaml).")
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]livewatch: error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _open(config: Path | None, data_dir: Path | None) -> Any:
    from app.config import ConfigError, load_config
    from store.db import Database

    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail(str(e)) from None
    return Database.for_data_dir(cfg.resolved_data_dir(data_dir), cfg.db_url)


def _price_config(path: Path | None) -> Any:
    from detectors.price_config import PriceConfigError, load_price_config

    try:
        return load_price_config(path)
    except PriceConfigError as e:
        raise _fail(str(e)) from None


@prices_app.command("import")
def import_prices(
    path: Annotated[
        Path, typer.Argument(help="CSV or JSON: product, price, date (YYYY-MM-DD or ISO 8601), source.")
    ],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    price_config: PriceConfigOpt = None,
) -> None:
    """Import known prices; price claims are checked against them."""
    from store.prices import ReferencePriceError, import_reference_prices

    pcfg = _price_config(price_config)
    if not path.is_file():
        raise _fail(f"{path}: no such file")
    db = _open(config, data_dir)
    try:
        added, present = import_reference_prices(db, path, timezone=pcfg.timezone)
    except ReferencePriceError as e:
        raise _fail(str(e)) from None
    finally:
        db.dispose()
    err.print(
        f"imported {added} reference prices from {path.name}"
        + (f" ({present} already present)" if present else "")
    )


def _price(kind: str | None, value: float | None) -> str:
    if value is None:
        return f"{kind}" if kind else ""
    v = f"{value:g}"
    return f"{kind} {v}" if kind else v


@prices_app.command("list")
def list_prices(
    stream: Annotated[str | None, typer.Option("--stream", help="Only this stream's claims.")] = None,
    product: Annotated[
        str | None, typer.Option("--product", help="Only claims whose product contains this.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="The most recent N claims.")] = 200,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON lines instead of a table.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    price_config: PriceConfigOpt = None,
) -> None:
    """Show the claim history (oldest first)."""
    from store.prices import list_claims

    tz = ZoneInfo(_price_config(price_config).timezone)
    db = _open(config, data_dir)
    try:
        rows = list_claims(db, stream, product=product, limit=limit)
    finally:
        db.dispose()
    if jsonl:
        for r in rows:
            c = r.claim
            sys.stdout.write(
                json.dumps(
                    {
                        "id": r.id,
                        "stream_id": r.stream_id,
                        "broadcast_id": r.broadcast_id,
                        "ts": r.ts,
                        "source": c.source,
                        "start_s": c.start_s,
                        "end_s": c.end_s,
                        "product": c.product,
                        "reference_price": c.reference_price,
                        "reference_kind": c.reference_kind,
                        "current_price": c.current_price,
                        "current_kind": c.current_kind,
                        "discount": c.discount,
                        "reduction": c.reduction,
                        "conditions": list(c.conditions),
                        "pressure": list(c.pressure),
                        "basis": c.basis,
                        "alert_id": r.alert_id,
                        "text": c.text,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        return
    title = f"{len(rows)} price claims" + (f" · stream {stream}" if stream else "")
    t = Table(title=title)
    for col in (
        "when",
        "stream",
        "at",
        "product",
        "reference",
        "current",
        "discount",
        "terms",
        "alert",
        "text",
    ):
        t.add_column(col, overflow="fold")
    for r in rows:
        c = r.claim
        when = "" if r.ts is None else datetime.fromtimestamp(r.ts, tz).strftime("%Y-%m-%d %H:%M:%S")
        terms = [*c.conditions, *c.pressure]
        if c.reduction is not None:
            terms.insert(0, f"减{c.reduction:g}")
        t.add_row(
            when,
            r.stream_id or "-",
            f"{c.source} {c.start_s:.1f}s",
            c.product or "",
            _price(c.reference_kind, c.reference_price),
            _price(c.current_kind, c.current_price),
            "" if c.discount is None else f"{c.discount * 10:g}折",
            " ".join(terms),
            (r.alert_id or "")[:12],
            c.text[:40],
        )
    Console(width=200).print(t)
