"""``orchestrator simulate``: run the local Kling-compatible simulator in the foreground."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from orchestrator.cli._app import EXIT_INTERRUPTED, cli, handle_errors
from orchestrator.providers.local import LocalSimulator, SimulatorOptions, serve_forever
from orchestrator.providers.local.state import DIALECTS, GATEWAY_INNER_FORMS

_RATE = click.FloatRange(0.0, 1.0)


def _env(name: str) -> str:
    return f"ORCHESTRATOR_SIM_{name}"


@cli.command()
@click.option(
    "--dialect",
    type=click.Choice(DIALECTS),
    default="cometapi",
    show_default=True,
    envvar=_env("DIALECT"),
    help="Which provider to imitate: cometapi (the Kling contract under /kling), kling (Kling direct: /v1, JWT) "
    "or gateway (CometAPI as a new-api gateway over several upstream accounts).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only by default).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host. The simulator accepts any key and its admin routes have no auth.",
)
@click.option(
    "--render-time",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.0),
    envvar=_env("RENDER_TIME"),
    help="Mean seconds from submit to succeed.",
)
@click.option("--render-jitter", default=0.25, show_default=True, type=_RATE, help="Relative jitter of render time.")
@click.option("--failure-rate", default=0.0, type=_RATE, envvar=_env("FAILURE_RATE"), help="Tasks that end failed.")
@click.option("--failure-message", default=SimulatorOptions.failure_message, help="Status message of failed tasks.")
@click.option("--rate-1302", default=0.0, type=_RATE, envvar=_env("RATE_1302"), help="Requests answered 429/1302.")
@click.option("--rate-1303", default=0.0, type=_RATE, envvar=_env("RATE_1303"), help="Creates answered 429/1303.")
@click.option("--rate-5xx", default=0.0, type=_RATE, envvar=_env("RATE_5XX"), help="Requests answered 500/503/504.")
@click.option("--drop-rate", default=0.0, type=_RATE, envvar=_env("DROP_RATE"), help="Requests dropped unanswered.")
@click.option(
    "--drop-after-create-rate",
    default=0.0,
    type=_RATE,
    envvar=_env("DROP_AFTER_CREATE_RATE"),
    help="Creates recorded but whose answer is dropped (an ambiguous create).",
)
@click.option(
    "--concurrency-cap",
    type=click.IntRange(0),
    envvar=_env("CONCURRENCY_CAP"),
    help="Tasks in flight per key; over it, create answers 429/1303.",
)
@click.option(
    "--account-exhausted-after",
    type=click.IntRange(0),
    help="After N accepted creates per key, create answers 429/1102.",
)
@click.option(
    "--upstream-accounts",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    envvar=_env("UPSTREAM_ACCOUNTS"),
    help="gateway: upstream Kling accounts creates are spread over (the cap applies to each).",
)
@click.option(
    "--not-visible-for",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0),
    envvar=_env("NOT_VISIBLE_FOR"),
    help="gateway: seconds after a create during which a query answers 400 task_not_exist.",
)
@click.option(
    "--bill-then-524-rate",
    default=0.0,
    type=_RATE,
    envvar=_env("BILL_THEN_524_RATE"),
    help="gateway: creates that are billed but answered 524 with an HTML page.",
)
@click.option(
    "--gateway-inner",
    type=click.Choice(GATEWAY_INNER_FORMS),
    default="envelope",
    show_default=True,
    envvar=_env("GATEWAY_INNER"),
    help="gateway: a query's data.data is the whole Kling envelope or the task object only.",
)
@click.option(
    "--disable-model",
    "disabled_models",
    multiple=True,
    metavar="MODEL",
    help="gateway: a model with no channel (create answers 503 model_not_found). Repeatable.",
)
@click.option(
    "--access-key",
    default=LocalSimulator.LOCAL_ACCESS_KEY,
    envvar=_env("ACCESS_KEY"),
    help="kling: the access key tokens must be issued by (iss).",
)
@click.option(
    "--secret-key",
    default=LocalSimulator.LOCAL_SECRET_KEY,
    envvar=_env("SECRET_KEY"),
    show_default=False,
    help="kling: the secret key tokens must be signed with (default: LocalSimulator.LOCAL_SECRET_KEY).",
)
@click.option("--seed", type=int, envvar=_env("SEED"), help="Seed for render times and faults (deterministic runs).")
@click.option("--cheap-video", is_flag=True, envvar=_env("CHEAP_VIDEO"), help="Tiny, low-fps videos (benchmarks).")
@click.option("--no-caption", is_flag=True, help="Do not burn the task's external id into the animatic.")
@click.option(
    "--storage",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for rendered videos (default: a temporary directory removed on exit).",
)
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="Remember tasks and videos in this folder across restarts (default: in memory only). Not with --storage.",
)
@handle_errors
def simulate(
    *,
    dialect: str,
    host: str,
    port: int,
    allow_remote: bool,
    render_time: float,
    render_jitter: float,
    failure_rate: float,
    failure_message: str,
    rate_1302: float,
    rate_1303: float,
    rate_5xx: float,
    drop_rate: float,
    drop_after_create_rate: float,
    concurrency_cap: int | None,
    account_exhausted_after: int | None,
    upstream_accounts: int,
    not_visible_for: float,
    bill_then_524_rate: float,
    gateway_inner: str,
    disabled_models: tuple[str, ...],
    access_key: str,
    secret_key: str,
    seed: int | None,
    cheap_video: bool,
    no_caption: bool,
    storage: Path | None,
    state: Path | None,
) -> None:
    """Run the local Kling-compatible simulator until Ctrl-C.

    It speaks the CometAPI routes (or, with --dialect, Kling direct's or a new-api gateway's), validates requests
    like the real service, and renders each task as a real H.264 animatic of its boards. Point the cometapi
    provider at it with COMETAPI_BASE_URL (any key works).
    """
    options = SimulatorOptions(
        dialect=dialect,
        upstream_accounts=upstream_accounts,
        not_visible_for=not_visible_for,
        bill_then_524_rate=bill_then_524_rate,
        gateway_inner=gateway_inner,
        disabled_models=frozenset(disabled_models),
        kling_keys={access_key: secret_key},
        render_time=render_time,
        render_jitter=render_jitter,
        failure_rate=failure_rate,
        failure_message=failure_message,
        rate_1302=rate_1302,
        rate_1303=rate_1303,
        rate_5xx=rate_5xx,
        drop_rate=drop_rate,
        drop_after_create_rate=drop_after_create_rate,
        concurrency_cap=concurrency_cap,
        account_exhausted_after=account_exhausted_after,
        seed=seed,
        cheap_video=cheap_video,
        caption=not no_caption,
        storage_dir=storage.resolve() if storage else None,
        state_dir=state.resolve() if state else None,
    )
    try:
        announce = functools.partial(
            _announce, options=options, own_secret=secret_key != LocalSimulator.LOCAL_SECRET_KEY
        )
        serve_forever(options, host=host, port=port, allow_remote=allow_remote, on_ready=announce)
    except KeyboardInterrupt:
        click.echo("simulator stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _announce(base_url: str, *, options: SimulatorOptions, own_secret: bool) -> None:
    click.echo(f"Kling simulator ({options.dialect} dialect) listening on {base_url}  (Ctrl-C to stop)")
    if options.dialect == "kling":
        [(access_key, secret_key)] = (options.kling_keys or {}).items()
        click.echo("Kling direct: routes under /v1, a JWT (HS256) per request, signed with this key pair:")
        click.echo(f"  access key: {access_key}")
        # A secret the user chose stays off the screen (and out of terminal logs); the local default is no secret.
        click.echo("  secret key: the one you gave" if own_secret else f"  secret key: {secret_key}")
    else:
        accounts = f", {options.upstream_accounts} upstream accounts" if options.dialect == "gateway" else ""
        click.echo(f"Point the cometapi provider at it (any key is accepted{accounts}):")
        click.echo(f"  export COMETAPI_BASE_URL={base_url}")
        click.echo(f"  export COMETAPI_KEY={LocalSimulator.LOCAL_API_KEY}")
    click.echo(f"Counters: {base_url}/_sim/stats   fault knobs: POST {base_url}/_sim/config")
