"""Adversarial inputs: hostile YAML, templates, paths, keys, downloads and report contents.

Each test states an attack and asserts the tool refuses it with a clear message (or stays safe), fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from click.testing import CliRunner
from PIL import Image

from orchestrator.cli import cli
from orchestrator.cli._app import DEBUG_VARIABLE
from orchestrator.config import kling_credentials_from_env
from orchestrator.errors import DownloadError, ManifestError, ProviderError
from orchestrator.plan.plan import output_file
from orchestrator.providers.classify import redact
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.kling import KlingProvider
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.report.html import _Thumbnailer
from orchestrator.spec import yamlsource
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.load import load_project
from orchestrator.spec.templating import TemplateRenderer
from orchestrator.store.manifest import SUCCEEDED, Manifest, Output, Render, ShotRecord, load_manifest, save_manifest


def boards(folder: Path) -> tuple[str, str]:
    for index, name in enumerate(("one.png", "two.png")):
        Image.new("RGB", (640, 360), (index * 90, 40, 200)).save(folder / name)
    return "one.png", "two.png"


def validate(*paths: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["validate", *map(str, paths)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


# --- YAML ------------------------------------------------------------------------------------------------------


def billion_laughs(levels: int) -> str:
    lines = ["version: 1", "project: p", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    lines.append(f"shots: *l{levels - 1}")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_fast_at_the_alias(tmp_path: Path) -> None:
    # 9**30 values once expanded: the schema walk over the shared structure used to run for minutes, in gigabytes.
    spec = tmp_path / "laughs.yaml"
    spec.write_text(billion_laughs(30))
    started = time.monotonic()
    code, output = validate(spec)
    assert time.monotonic() - started < 10
    assert code == 1
    assert "YAML aliases expand to over 2,000,000 values" in output
    assert f"{spec}:" in output and "Traceback" not in output


def test_aliases_below_the_limit_still_work() -> None:
    source = yamlsource.parse_source(b"base: &b {a: 1}\nx: *b\ny: {<<: *b, c: 2}\n", file="s.yaml")
    assert source.problems == ()
    assert source.data == {"base": {"a": 1}, "x": {"a": 1}, "y": {"a": 1, "c": 2}}


@pytest.mark.parametrize("text", ["x: " + "[" * 500 + "]" * 500, "x: " + "{a: " * 500 + "1" + "}" * 500])
def test_deep_nesting_is_a_problem_not_a_recursion_error(text: str) -> None:
    source = yamlsource.parse_source(text.encode(), file="deep.yaml")
    assert source.data is None
    assert len(source.problems) == 1
    problem = source.problems[0]
    assert problem.line == 1 and "nested more than 100 levels deep" in problem.message


def test_deeply_nested_spec_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "deep.yaml"
    spec.write_text("version: 1\nproject: p\nvars:\n  x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    code, output = validate(spec)
    assert code == 1 and "nested more than 100 levels deep" in output and "Traceback" not in output


def test_a_huge_spec_file_is_refused_without_reading_it_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "MAX_SPEC_BYTES", 1000)
    spec = tmp_path / "huge.yaml"
    spec.write_text("version: 1\nproject: p\n# " + "x" * 5000 + "\n")
    source = yamlsource.read_source(spec)
    assert source.data is None and "the file is over" in source.problems[0].message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes(range(256)) * 4, "not UTF-8"),
        ("version: 1\nproject: café\n".encode("latin-1"), "not UTF-8"),
        (b"version: 1\nproject: !!python/object/apply:os.system ['echo pwned']\n", "unsupported tag"),
        (b"version: 1\nx: !!python/object/new:os.system\n  args: ['echo pwned']\n", "unsupported tag"),
        (b"version: 1\nx: !!python/name:os.system\n", "bad YAML value"),
    ],
)
def test_garbage_and_code_tags_are_problems(raw: bytes, message: str) -> None:
    source = yamlsource.parse_source(raw, file="bad.yaml")
    assert any(message in problem.message for problem in source.problems)


def test_bom_directory_and_symlink_loop(tmp_path: Path) -> None:
    one, two = boards(tmp_path)
    spec = tmp_path / "bom.yaml"
    text = f"version: 1\nproject: p\nshots:\n  - {{id: a, images: [{one}, {two}], prompt: hi}}\n"
    spec.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert validate(spec)[0] == 0
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "loop1.yaml").symlink_to(tmp_path / "loop2.yaml")
    (tmp_path / "loop2.yaml").symlink_to(tmp_path / "loop1.yaml")
    code, output = validate(tmp_path / "dir.yaml", tmp_path / "loop1.yaml")
    assert code == 1
    assert "is a directory" in output and "cannot read the file" in output and "Traceback" not in output


# --- Templates ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ '{0.__class__}'.format(x) }}",
        "{{ ''|attr('__class__') }}",
    ],
)
def test_sandbox_escapes_are_refused(template: str) -> None:
    rendered = TemplateRenderer().render(template, variables={"x": 1})
    assert rendered.error is not None and "sandbox" in rendered.error


@pytest.mark.parametrize(
    "template",
    [
        # time: nested loops, and exponential macro recursion, each far beyond any prompt
        "{% for x in range(10**5) %}{% for y in range(10**5) %}{% endfor %}{% endfor %}",
        "{% for x in range(10**5) %}{% for y in 'x' * 99999 %}{% endfor %}{% endfor %}",
        "{% macro m(n) %}{% if n < 40 %}{{ m(n + 1) }}{{ m(n + 1) }}{% endif %}{% endmacro %}{{ m(0) }}",
        # memory: output, captured blocks and namespaces that grow without a `*`
        "{% set s = 'x' * 99999 %}{% for i in range(100000) %}{{ s }}{% endfor %}",
        "{% set b %}{% for i in range(100000) %}{{ 'y' * 99999 }}{% endfor %}{% endset %}{{ b | length }}",
        "{% set ns = namespace(s='x' * 99999) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        # memory: widths and amplifying filters and methods
        "{{ 'a' * 10**9 }}",
        "{{ 'a' | center(10**9) }}",
        "{{ 'a' | indent(10**9) }}",
        "{{ 'a'.ljust(999999999) }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '%0999999999d' | format(1) }}",
        "{{ '%*d' | format(10**9, 1) }}",
        "{{ '{:>1000000000}'.format('a') }}",
        "{{ '{0:{1}}'.format('a', 10**9) }}",
        "{{ ('x' * 99999).replace('x', 'x' * 99999) }}",
        "{{ ('y' * 99999).join(['a'] * 99999) }}",
        "{{ (['a'] * 50000) | join('x' * 50000) }}",
        "{{ range(100000) | map('string') | join('x' * 99999) }}",
        "{{ [1, 2] | batch(10**9, 'x') | list | length }}",
        "{{ [1, 2] | slice(10**9) | list | length }}",
    ],
)
def test_runaway_templates_stop_quickly_with_a_message(template: str) -> None:
    started = time.monotonic()
    rendered = TemplateRenderer().render(template, variables={})
    assert time.monotonic() - started < 5
    assert rendered.error is not None and "sandbox" in rendered.error


def test_ordinary_templates_still_render() -> None:
    template = (
        "{% for i in range(3) %}{{ loop.index }}{% endfor %} {{ [1, 2, 3] | join(',') }}"
        " {{ 'a b' | replace('a', 'c') }} [{{ 'x' | center(5) }}] {{ '%05d' | format(seed) }}"
        " {{ '{:>4}'.format('z') }} {{ '{}'.format(seed) }}"
        " {% set ns = namespace(n=0) %}{% for s in shots %}{% set ns.n = ns.n + s %}{% endfor %}{{ ns.n }}"
    )
    rendered = TemplateRenderer().render(template, variables={"seed": 123456789, "shots": [1, 2, 3]})
    assert rendered.error is None
    assert rendered.text == "123 1,2,3 c b [  x  ] 123456789    z 123456789 6"


def test_a_runaway_prompt_is_a_problem_at_its_line(tmp_path: Path) -> None:
    one, two = boards(tmp_path)
    spec = tmp_path / "s.yaml"
    loop = "{% for x in range(99999) %}{% for y in range(99999) %}{% endfor %}{% endfor %}"
    spec.write_text(f"version: 1\nproject: p\nshots:\n  - id: a\n    images: [{one}, {two}]\n    prompt: '{loop}'\n")
    code, output = validate(spec)
    assert code == 1
    assert f"{spec}:6:" in output and "loop iterations" in output


# --- Paths -------------------------------------------------------------------------------------------------------


def write_spec(folder: Path, *, shot_id: str = "a", project: str = "p") -> Path:
    one, two = boards(folder)
    spec = folder / "s.yaml"
    spec.write_text(
        f'version: 1\nproject: "{project}"\nshots:\n  - id: "{shot_id}"\n    images: [{one}, {two}]\n    prompt: hi\n'
    )
    return spec


def succeeded_manifest(spec: Path, out: Path, outputs: list[Output], *, submitted_at: str | None = None) -> Path:
    shot = load_project(spec).shots[0]
    record = ShotRecord(
        submitted_at=submitted_at,
        status=SUCCEEDED,
        fingerprint=shot.fingerprint,
        task_id="t1",
        attempts=1,
        request=request_record(shot),
        outputs=outputs,
    )
    path = out / "manifest.json"
    out.mkdir(parents=True, exist_ok=True)
    save_manifest(Manifest(project="p", shots={shot.id: record}), path)
    return path


@pytest.mark.parametrize("shot_id", ["a\\n", "CON\\n", "a\\u0430", "../a", "a/b", "a\\\\b", "/abs", ".hidden", "-a"])
def test_unsafe_shot_ids_are_refused(tmp_path: Path, shot_id: str) -> None:
    # "a\n" used to pass: Python's `$` matches before a final newline, JSON Schema's (ECMA) does not.
    code, output = validate(write_spec(tmp_path, shot_id=shot_id))
    assert code == 1 and "`id`" in output


@pytest.mark.parametrize(
    ("shot_id", "message"),
    [
        ("CON", "reserved device name"),
        ("nul.mp4", "reserved device name"),
        ("Com1", "reserved device name"),
        ("a.", "ends with a dot"),
    ],
)
def test_ids_that_cannot_be_folders_on_windows_are_refused(tmp_path: Path, shot_id: str, message: str) -> None:
    code, output = validate(write_spec(tmp_path, shot_id=shot_id))
    assert code == 1 and message in output


def test_ids_that_merely_start_like_a_device_are_fine(tmp_path: Path) -> None:
    assert validate(write_spec(tmp_path, shot_id="console"))[0] == 0


def test_a_project_slug_with_a_newline_is_refused(tmp_path: Path) -> None:
    code, output = validate(write_spec(tmp_path, project="p\\n"))
    assert code == 1 and "`project`" in output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("javascript:alert(1)", "not valid"),
        ("http://x y/cb", "spaces or control characters"),
        ("https://a.test/\\u0000", "spaces or control characters"),
        ("https://a.test/\\e[2J", "spaces or control characters"),
        ("http://a.test:99999/", "invalid port"),
    ],
)
def test_callback_urls_must_be_clean_http_urls(tmp_path: Path, url: str, message: str) -> None:
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text() + f'    callback_url: "{url}"\n')
    code, output = validate(spec)
    assert code == 1 and message in output


def test_output_file_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "v.mp4").write_bytes(b"video")
    (tmp_path / "secret").write_text("secret")
    (out / "a" / "link.mp4").symlink_to(tmp_path / "secret")
    fifo = out / "a" / "fifo.mp4"
    os.mkfifo(fifo)
    assert output_file(out, "a/v.mp4") == (out / "a" / "v.mp4").resolve()
    for hostile in ("../secret", "a/../../secret", str(tmp_path / "secret"), "/dev/zero", "a/link.mp4", "a/fifo.mp4"):
        assert output_file(out, hostile) is None, hostile
    assert output_file(out, 7) is None  # type: ignore[arg-type]  # manifests are hand-editable JSON


@pytest.mark.timeout(30)
@pytest.mark.parametrize("hostile", ["/dev/zero", "../../../../../../../../dev/zero", "SECRET"])
def test_plan_never_reads_outputs_outside_the_folder(tmp_path: Path, hostile: str) -> None:
    # `/dev/zero` with `bytes: 0` used to be hashed forever; a `../` path with the right size and hash was
    # "unchanged" (and the report linked to it).
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not ours")
    path = str(secret) if hostile == "SECRET" else hostile
    size = 0 if "zero" in hostile else len(b"not ours")
    digest = hashlib.sha256(b"" if "zero" in hostile else b"not ours").hexdigest()
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    succeeded_manifest(spec, out, [Output(path=path, sha256=digest, bytes=size)])
    result = CliRunner().invoke(cli, ["plan", str(spec), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["shots"][0]["category"] != "unchanged"
    report = CliRunner().invoke(cli, ["report", str(out)])
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text()
    assert not re.search(r'href="[^"]*(secret|dev/zero)', html)


def test_report_thumbnails_skip_fifos_named_in_a_manifest(tmp_path: Path) -> None:
    fifo = tmp_path / "board.png"
    os.mkfifo(fifo)  # opening it would block the report forever
    thumb = _Thumbnailer(tmp_path).thumb("board.png")
    assert thumb.data_uri is None and thumb.note == "not a regular file"


# --- Hand-edited manifests and the last-resort handler -------------------------------------------------------------


def corrupt_cost_manifest(tmp_path: Path) -> Path:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    path = succeeded_manifest(spec, out, [])
    data = json.loads(path.read_text())
    data["shots"]["a"]["cost"] = "lots"
    path.write_text(json.dumps(data))
    return out


def test_unforeseen_errors_are_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import _app

    def boom(**_: object) -> None:
        raise TypeError("an odd value")

    monkeypatch.setattr(_app, "cli", boom)
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        _app.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected TypeError: an odd value") and err.count("\n") == 1


def test_a_hand_edited_manifest_with_wrong_types_is_one_clear_line(tmp_path: Path) -> None:
    out = corrupt_cost_manifest(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != DEBUG_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", str(out)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "manifest is corrupt" in done.stderr and done.stderr.count("\n") == 1


def test_python_dash_m_orchestrator_works() -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "validate" in done.stdout


def test_a_manifest_with_wrong_field_types_is_a_manifest_error(tmp_path: Path) -> None:
    out = corrupt_cost_manifest(tmp_path)
    with pytest.raises(ManifestError, match="corrupt"):
        load_manifest(out / "manifest.json")


# --- API keys ------------------------------------------------------------------------------------------------------

SECRET = "sk-test-SECRET-abc123"
FAST = {"cheap_video": True, "render_time": 0.2, "render_jitter": 0.1, "seed": 7}


def fleet_spec(folder: Path, shots: int = 4) -> Path:
    one, two = boards(folder)
    lines = "".join(f"  - {{id: s{i}, images: [{one}, {two}], prompt: 'shot {i}'}}\n" for i in range(shots))
    spec = folder / "fleet.yaml"
    spec.write_text(f"version: 1\nproject: keys\nlimits: {{concurrency: 4, requests_per_second: 100}}\nshots:\n{lines}")
    return spec


def assert_no_secret(*texts: str, out: Path) -> None:
    for text in texts:
        assert SECRET not in text and "abc123" not in text
    for path in out.rglob("*"):
        if path.is_file():
            assert b"abc123" not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("options", "exit_code"),
    [
        ({"rate_1302": 0.1, "rate_5xx": 0.1, "drop_rate": 0.05, "failure_rate": 0.3}, 1),
        ({"account_exhausted_after": 1}, 1),
        ({"api_keys": frozenset({"other"})}, 1),
    ],
    ids=["faults", "account-exhausted", "key-rejected"],
)
def test_the_key_never_leaves_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, object],
    exit_code: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = fleet_spec(tmp_path)
    out = tmp_path / "out"
    with LocalSimulator(SimulatorOptions(**FAST, **options)) as sim:  # type: ignore[arg-type]
        monkeypatch.setenv("COMETAPI_KEY", SECRET)
        monkeypatch.setenv("COMETAPI_BASE_URL", sim.base_url)
        result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "cometapi", "--json", "--out", str(out)])
        report = CliRunner().invoke(cli, ["report", str(out)])
        status = CliRunner().invoke(cli, ["status", "--json", str(out)])
    assert result.exit_code in (0, exit_code), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (out / "manifest.json").is_file() and (out / "report.html").is_file()
    assert_no_secret(result.stdout, result.stderr, report.output, status.output, caplog.text, out=out)
    if "api_keys" in options:
        assert "authentication failed" in result.stderr


@pytest.mark.timeout(60)
def test_an_unreachable_endpoint_ends_the_run_with_a_message(tmp_path: Path) -> None:
    spec = fleet_spec(tmp_path, shots=1)
    env = {**os.environ, "COMETAPI_KEY": SECRET, "COMETAPI_BASE_URL": "http://127.0.0.1:9"}
    env.pop(DEBUG_VARIABLE, None)
    command = [sys.executable, "-m", "orchestrator", "run", str(spec), "--provider", "cometapi", "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=6)
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        assert_no_secret(stdout, out=tmp_path)
        raise AssertionError("the run against a closed port was still retrying after 6 s") from None
    assert done.returncode == 1 and "127.0.0.1:9" in done.stderr
    assert_no_secret(done.stdout, done.stderr, out=tmp_path)


# --- Kling's key pair and its JWT -------------------------------------------------------------------------------------

KLING_ACCESS = "AK-kling-access-xyz789"
KLING_SECRET = "SK-kling-secret-for-hs256-signing-xyz789"
KLING_BASE = "https://api-singapore.klingai.test"


def kling_client(handler: Callable[[httpx.Request], httpx.Response]) -> KlingProvider:
    return KlingProvider(
        base_url=KLING_BASE, access_key=KLING_ACCESS, secret_key=KLING_SECRET, transport=httpx.MockTransport(handler)
    )


def kling_echo(status: int, code: int | None, *, shape: str = "kling") -> Callable[[httpx.Request], httpx.Response]:
    """A provider that echoes every secret it was sent (the JWT from the header, and both keys) in its error."""

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "")
        said = f"{token} iss={KLING_ACCESS} key={KLING_SECRET} raw={token.removeprefix('Bearer ')}"
        if shape == "html":
            return httpx.Response(status, content=f"<html>{said}</html>".encode())
        if shape == "gateway":
            return httpx.Response(status, json={"error": {"message": said, "code": "invalid_api_key"}})
        if shape == "nested":
            inner = json.dumps({"code": code, "message": said})
            return httpx.Response(status, json={"code": "task_failed", "message": inner, "data": None})
        return httpx.Response(status, json={"code": code, "message": said, "request_id": "r"})

    return handler


def _kling_raise(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    "handler",
    [
        kling_echo(401, 1000),
        kling_echo(401, 1004),  # signed afresh, sent again, echoed again
        kling_echo(429, 1303),
        kling_echo(400, 1201),
        kling_echo(404, 1203),
        kling_echo(500, 5000),
        kling_echo(401, None, shape="gateway"),
        kling_echo(502, None, shape="html"),
        kling_echo(429, 1102, shape="nested"),
        _kling_raise(httpx.RemoteProtocolError(f"dropped {KLING_SECRET}")),
    ],
)
async def test_neither_kling_key_nor_a_jwt_reaches_errors_reprs_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, handler: Callable[[httpx.Request], httpx.Response]
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = fleet_spec(tmp_path, shots=1)
    shot = load_project(spec).shots[0]
    tokens: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers.get("authorization", "").removeprefix("Bearer "))
        return handler(request)

    provider = kling_client(recording)
    texts = [repr(provider), repr(provider._auth), str(vars(provider))]
    async with provider:
        calls = (
            lambda: provider.create_task(shot),
            lambda: provider.get_task("1"),
            lambda: provider.find_task("x"),  # may answer None: "not found" is no error
            lambda: provider.list_tasks(page_size=2),
        )
        for call in calls:
            try:
                await call()
            except ProviderError as exc:
                texts += [str(exc), repr(exc), str(vars(exc)), *map(str, exc.args)]
    assert len(texts) > 3  # the calls failed, and their errors were looked at
    assert tokens and all(token.startswith("eyJ") for token in tokens)
    for text in [*texts, caplog.text]:
        assert KLING_ACCESS not in text and KLING_SECRET not in text
        assert not any(token in text for token in tokens)
        assert "eyJ" not in text  # no JWT at all, not even a part of one


def test_redact_removes_both_kling_keys_and_any_jwt() -> None:
    token = jwt.encode({"iss": KLING_ACCESS}, KLING_SECRET, algorithm="HS256")
    text = redact(f"{KLING_ACCESS} {KLING_SECRET} token={token} Bearer {token}", secret=(KLING_ACCESS, KLING_SECRET))
    assert KLING_ACCESS not in text and KLING_SECRET not in text and token not in text
    assert token.split(".")[1] not in text
    assert redact(f"a stray {token}!", secret=None) == "a stray <redacted-jwt>!"


def test_kling_credentials_never_show_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", KLING_ACCESS)
    monkeypatch.setenv("KLING_SECRET_KEY", KLING_SECRET)
    credentials = kling_credentials_from_env()
    assert (credentials.access_key, credentials.secret_key) == (KLING_ACCESS, KLING_SECRET)
    assert KLING_ACCESS not in repr(credentials) and KLING_SECRET not in repr(credentials)


def test_a_kling_run_leaks_neither_key_nor_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A whole run with --provider kling, against a loopback server that answers with the Kling contract's errors:
    # nothing the run writes or prints (stdout, stderr, manifest, events, report, logs) names a key or a JWT.
    caplog.set_level(logging.DEBUG)
    spec = fleet_spec(tmp_path, shots=2)
    out = tmp_path / "out"
    with LocalSimulator(SimulatorOptions(**FAST)) as sim:  # type: ignore[arg-type]
        monkeypatch.setenv("KLING_ACCESS_KEY", KLING_ACCESS)
        monkeypatch.setenv("KLING_SECRET_KEY", KLING_SECRET)
        monkeypatch.setenv("KLING_BASE_URL", sim.base_url)
        result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "kling", "--json", "--out", str(out)])
        report = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    texts = [result.stdout, result.stderr, report.output, caplog.text]
    for path in out.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    for text in texts:
        assert KLING_ACCESS not in text and KLING_SECRET not in text and "xyz789" not in text
        assert "eyJhbGciOiJIUzI1NiIs" not in text  # the start of every HS256 JWT header we sign


# --- Downloads -----------------------------------------------------------------------------------------------------

API = "https://api.example.test"


def download_client(handler: Callable[[httpx.Request], httpx.Response]) -> CometAPIProvider:
    return CometAPIProvider(base_url=API, api_key=SECRET, transport=httpx.MockTransport(handler))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://cdn.test/v.mp4",
        "javascript:alert(1)",
        "",
        "/v1/private",
        "//evil.test/v.mp4",
        "http://[::1",
        "https://cdn.test/a\x00b",
    ],
)
async def test_unusable_video_urls_are_refused_before_any_request(tmp_path: Path, url: str) -> None:
    # A relative URL resolved against the API and went out with the key; a malformed one raised httpx.InvalidURL,
    # which the scheduler does not expect (it would end the run instead of leaving the shot `downloading`).
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"video")

    async with download_client(handler) as client:
        with pytest.raises(DownloadError, match="unusable video URL") as caught:
            await client.download(url, tmp_path / "v.mp4")
    assert caught.value.retryable is False
    assert requests == [] and os.listdir(tmp_path) == []


@pytest.mark.anyio
async def test_a_redirect_loop_is_a_download_error_and_leaves_nothing(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": str(request.url)})

    async with download_client(handler) as client:
        with pytest.raises(DownloadError, match="TooManyRedirects"):
            await client.download("https://cdn.test/loop.mp4", tmp_path / "v.mp4")
    assert os.listdir(tmp_path) == []


@pytest.mark.anyio
async def test_the_key_goes_to_the_api_origin_only(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.test" and request.url.path == "/hop":
            return httpx.Response(302, headers={"Location": "https://other.test/v.mp4"})
        seen[str(request.url)] = request.headers.get("authorization")
        return httpx.Response(200, content=b"video")

    async with download_client(handler) as client:
        await client.download("https://cdn.test/v.mp4", tmp_path / "a.mp4")
        await client.download("https://cdn.test/hop", tmp_path / "b.mp4")
        await client.download(f"{API}/v.mp4", tmp_path / "c.mp4")
    assert seen == {
        "https://cdn.test/v.mp4": None,
        "https://other.test/v.mp4": None,
        f"{API}/v.mp4": f"Bearer {SECRET}",
    }


# --- HTML report -----------------------------------------------------------------------------------------------------

HOSTILE = '"><img src=x onerror=alert(1)><script>alert(1)</script>'


def test_the_report_shows_hostile_text_as_text(tmp_path: Path) -> None:
    out = tmp_path / "out"
    video = out / "a" / f"v{HOSTILE.replace('/', '')}.mp4"  # a file name is user text too
    video.parent.mkdir(parents=True)
    video.write_bytes(b"video")
    request = {
        "prompt": HOSTILE,
        "negative_prompt": HOSTILE,
        "image_refs": ["javascript:alert(1)", HOSTILE, "data:text/html,<script>alert(1)</script>"],
        "callback_url": "javascript:alert(1)",
        "model": HOSTILE,
    }
    record = ShotRecord(
        status=SUCCEEDED,
        fingerprint="f" * 64,
        task_id=HOSTILE,
        external_task_id=HOSTILE,
        error=HOSTILE,
        request=request,
        outputs=[Output(path=video.relative_to(out).as_posix(), sha256="0" * 64, bytes=5)],
        history=[Render("e" * 64, HOSTILE, HOSTILE, [Output(path="javascript:alert(1)", sha256="", bytes=0)], request)],
    )
    save_manifest(Manifest(project=HOSTILE, spec_path=HOSTILE, shots={HOSTILE: record}), out / "manifest.json")
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert html.count("<script") == 1  # the page's own status filter, nothing else
    assert "<img src=x" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    attributes = re.findall(r'\b(?:href|src|action|formaction)="([^"]*)"', html)
    assert attributes, "the report should link the video"
    for value in attributes:
        assert value.startswith("data:image/jpeg;base64,") or value == "data:," or not re.match(r"[a-z]+:", value)
    assert "javascript:" not in "".join(attributes)
    assert re.search(r"<video controls preload=\"metadata\" src=\"a/v[^\"<>]*\.mp4\">", html)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp is not None and "default-src 'none'" in csp.group(1) and "img-src data:" in csp.group(1)


# --- CLI: bad arguments, odd files, failing writes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["validate"],
        ["run"],
        ["plan"],
        ["diff"],
        ["diff", "a"],
        ["schema", "extra"],
        ["run", "missing.yaml"],
        ["run", "SPEC", "--concurrency", "0"],
        ["run", "SPEC", "--concurrency", "many"],
        ["run", "SPEC", "--rps", "-1"],
        ["run", "SPEC", "--max-cost", "-5"],
        ["run", "SPEC", "--provider", "evil"],
        ["run", "SPEC", "--out", "SPEC"],
        ["plan", "SPEC", "--price", "nonsense"],
        ["plan", "SPEC", "--price", "std_5s=nan"],
        ["plan", "SPEC", "--price", "std_5s=-1"],
        ["plan", "missing.yaml"],
        ["status", "missing"],
        ["report", "missing"],
        ["report", "SPEC", "-o", "OUT"],
        ["diff", "missing.yaml", "SPEC"],
        ["diff", "SPEC@--upload-pack=evil", "SPEC"],
        ["validate", "BOARD"],
        ["status", "BOARD"],
        ["simulate", "--port", "99999"],
        ["simulate", "--host", "0.0.0.0"],
    ],
)
def test_bad_arguments_are_a_clean_non_zero_exit(tmp_path: Path, args: list[str]) -> None:
    spec = write_spec(tmp_path)
    (tmp_path / "OUT").mkdir()
    names = {"SPEC": str(spec), "OUT": str(tmp_path / "OUT"), "BOARD": str(tmp_path / "one.png")}
    argv = [names.get(arg, arg).replace("SPEC@", f"{spec}@") for arg in args]
    result = CliRunner().invoke(cli, argv)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (1, 2) or (args == [] and result.exit_code in (0, 2))
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://127.0.0.1:99999", "no valid port"),
        ("http://user:hunter2@127.0.0.1:9", "must not carry a user"),
        (f"https://api.example.test/?key={SECRET}", "must not carry a user"),
    ],
)
def test_a_bad_base_url_stops_before_anything_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, message: str
) -> None:
    # Port 99999 used to pass the check and raise OverflowError mid-run, after shots were marked submitting; a URL
    # carrying credentials was printed in the run's first line and JSON event.
    spec = fleet_spec(tmp_path, shots=1)
    monkeypatch.setenv("COMETAPI_KEY", SECRET)
    monkeypatch.setenv("COMETAPI_BASE_URL", base_url)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "cometapi", "--json", "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert message in result.stderr
    assert "hunter2" not in result.output and "abc123" not in result.output
    assert not (out / "manifest.json").exists()


def test_a_full_disk_for_the_report_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated, not /dev/full: a regression that renames a temp file over the target would replace a device node.
    import errno

    import orchestrator.report.html

    def full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(orchestrator.report.html, "write_atomic", full)
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    succeeded_manifest(spec, out, [])
    result = CliRunner().invoke(cli, ["report", str(out), "-o", str(tmp_path / "report.html")])
    assert result.exit_code == 1 and "cannot write the report (No space left on device)" in result.stderr


def test_a_report_into_a_pipe_is_written_into_it_not_renamed_over_it(tmp_path: Path) -> None:
    import threading

    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    succeeded_manifest(spec, out, [])
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text(encoding="utf-8")), daemon=True)
    reader.start()
    result = CliRunner().invoke(cli, ["report", str(out), "-o", str(pipe)])
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert pipe.is_fifo()
    assert received and received[0].lstrip().lower().startswith("<!doctype html")


def test_an_output_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    (tmp_path / "afile").write_text("in the way")
    result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "local", "--out", str(tmp_path / "afile" / "x")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "afile" in result.stderr


@pytest.mark.parametrize("rps", ["nan", "inf"])
def test_a_non_finite_rps_is_refused_up_front(tmp_path: Path, rps: str) -> None:
    spec = write_spec(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "local", "--rps", rps])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert not (tmp_path / "renders" / "manifest.json").exists()


def test_max_cost_nan_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "local", "--dry-run", "--max-cost", "nan"])
    assert result.exit_code == 2


def test_a_deeply_nested_manifest_is_corrupt_not_a_recursion_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError):
        load_manifest(tmp_path / "manifest.json")


@pytest.mark.timeout(60)
def test_resuming_a_task_the_provider_forgot_does_not_stall(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    succeeded_manifest(spec, out, [], submitted_at=an_hour_ago.isoformat().replace("+00:00", "Z"))  # video gone
    command = [sys.executable, "-m", "orchestrator", "run", str(spec), "--provider", "local", "--out", str(out)]
    try:
        subprocess.run(command, capture_output=True, text=True, timeout=8)
    except subprocess.TimeoutExpired:
        raise AssertionError("still polling a forgotten task after 8 s") from None


# --- Terminal output -------------------------------------------------------------------------------------------------

TERMINAL = "[/bold] [link=https://evil.test]x[/link] \x1b[31mRED\x1b[0m \x1b]0;title\x07 \u202etxt.exe"


def hostile_failed_manifest(tmp_path: Path) -> tuple[Path, Path]:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    path = succeeded_manifest(spec, out, [])
    data = json.loads(path.read_text())
    data["project"] = "p"
    record = data["shots"]["a"]
    record["status"], record["error"] = "failed", TERMINAL
    record["request"]["prompt"] = TERMINAL
    path.write_text(json.dumps(data))
    return spec, out


def assert_inert(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[31mRED" in text  # shown, not obeyed


@pytest.mark.parametrize("command", ["status", "plan", "diff"])
def test_provider_and_manifest_text_cannot_drive_the_terminal(tmp_path: Path, command: str) -> None:
    # Error messages come from the provider and prompts from whoever wrote the manifest: ESC sequences in them used
    # to reach the terminal as is (colours, window title, cursor moves), and a bidi override could disguise text.
    spec, out = hostile_failed_manifest(tmp_path)
    argv = {"status": ["status", str(out)], "plan": ["plan", str(spec), "--out", str(out)]}
    result = CliRunner().invoke(cli, argv.get(command, ["diff", str(out), str(spec)]), terminal_width=300)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_inert(result.output)


def test_a_project_name_that_is_rich_markup_does_not_crash_status(tmp_path: Path) -> None:
    _, out = hostile_failed_manifest(tmp_path)
    data = json.loads((out / "manifest.json").read_text())
    data["project"] = "[/bold]"
    (out / "manifest.json").write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["status", str(out)])
    assert result.exit_code == 0, result.output
    assert "[/bold]: 1 shot\n" in result.output


def test_spec_problems_cannot_drive_the_terminal(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text('version: 1\nproject: p\n"\\e]0;owned\\a\\e[2J": 1\nshots: []\n')
    code, output = validate(spec)
    assert code == 1 and "\x1b" not in output and "\\x1b]0;owned" in output


def test_a_provider_failure_message_cannot_break_the_run_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = fleet_spec(tmp_path, shots=1)
    options = SimulatorOptions(**FAST, failure_rate=1.0, failure_message=TERMINAL)  # type: ignore[arg-type]
    with LocalSimulator(options) as sim:
        monkeypatch.setenv("COMETAPI_KEY", SECRET)
        monkeypatch.setenv("COMETAPI_BASE_URL", sim.base_url)
        result = CliRunner().invoke(cli, ["run", str(spec), "--provider", "cometapi", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "unexpected" not in result.output
    assert_inert(result.output)


# --- issue 13: fuzzed specs, FIFOs, templates that cost to compile, files at a git revision --------------------


@pytest.mark.timeout(20)
def test_a_fifo_spec_nobody_writes_does_not_hang_validate(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    code, output = validate(fifo)
    assert code == 1 and f"{fifo}:1:1: is a FIFO (named pipe), not a spec file" in output


def test_a_megabyte_of_template_is_refused_before_compiling(tmp_path: Path) -> None:
    # 100,000 x `{{ style }}` took 8-9 s and 920 MB to compile; now refused on its length, at the prompt's line.
    one, two = boards(tmp_path)
    spec = tmp_path / "s.yaml"
    prompt = "{{ style }}" * 100_000
    spec.write_text(
        f"version: 1\nproject: p\nvars: {{style: s}}\nshots:\n  - id: a\n    images: [{one}, {two}]\n"
        f'    prompt: "{prompt}"\n'
    )
    started = time.monotonic()
    code, output = validate(spec)
    assert time.monotonic() - started < 3
    assert code == 1 and f"{spec}:7:13: shot a: prompt: the template is 1,100,000 characters" in output


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_a_spec_at_a_revision_cannot_read_outside_the_repository(tmp_path: Path) -> None:
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from orchestrator.errors import SpecError
    from orchestrator.plan.diff import load_side

    secret = tmp_path / "secret.png"
    Image.new("RGB", (640, 360), (1, 1, 1)).save(secret)
    repo = tmp_path / "repo"
    repo.mkdir()
    one, _ = boards(repo)
    (repo / "link.png").symlink_to(secret)  # committed as a symlink blob: its target is not the repository's
    (repo / "s.yaml").write_text(
        f"version: 1\nproject: p\nshots:\n  - id: a\n    images: [{one}, ../secret.png]\n    prompt: x\n"
        f"  - id: b\n    images: [{one}, link.png]\n    prompt: x\n"
    )
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    with pytest.raises(SpecError) as caught:
        load_side(f"{repo / 's.yaml'}@HEAD")
    messages = sorted(p.message for p in caught.value.problems)
    assert messages == [
        "images[1] `../secret.png` is outside the git repository, so it has no version at HEAD",
        "images[1] `link.png` is not a regular file at HEAD",
    ]
