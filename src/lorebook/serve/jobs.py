"""Teach, eval and sweep runs started from the web page, as child processes of the server.

A job runs the same `lorebook teach|eval run|sweep` command a user would type, so it behaves exactly
like the CLI (resume, one-line errors, stored results) and a crash or a minutes-long training run never
blocks the server's event loop or its models. The child's output is read line by line (tqdm's `\\r`
updates included); the latest percentage becomes the job's progress, streamed to the page over SSE.
Packs are uploaded into the data dir (`serve/packs/`) and named, never given as paths; flags are
passed as separate arguments (no shell) and values that look like paths are refused.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from lorebook import paths
from lorebook.errors import InputError

router = APIRouter()
KINDS = {"teach": ["teach"], "eval": ["eval", "run"], "sweep": ["sweep"]}
_FLAG = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_PACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.jsonl$")
_PATH_FLAGS = {"config", "report", "out", "output", "storage", "json"}
_PERCENT = re.compile(r"(\d{1,3})%\|")
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"  # shipped packs, in a source checkout


def pack_dir() -> Path:
    folder = paths.subdir("serve") / "packs"
    folder.mkdir(exist_ok=True)
    return folder


def list_packs() -> list[str]:
    found = {p.name for p in pack_dir().glob("*.jsonl")}
    if EXAMPLES.is_dir():
        found |= {p.name for p in EXAMPLES.glob("*.jsonl")}
    return sorted(found)


def find_pack(name: str) -> Path:
    if not _PACK.match(name or ""):
        raise InputError(f"pack {name!r} is not a pack name", "upload the pack, then use its name (NAME.jsonl)")
    for folder in (pack_dir(), EXAMPLES):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"no pack named {name!r}", f"use one of: {', '.join(list_packs()) or 'none yet: upload one'}")


@functools.cache
def negatable_switches(kind: str) -> frozenset[str]:
    """The on/off options of a job's CLI command that also have a `--no-` form (e.g. `--no-probe`)."""
    import click
    import typer

    from lorebook.cli.main import app

    command = typer.main.get_command(app)
    for part in KINDS[kind]:
        command = command.get_command(click.Context(command), part)
    return frozenset(o[5:] for p in command.params for o in p.secondary_opts if o.startswith("--no-"))


def command_args(kind: str, pack: str, options: dict) -> list[str]:
    """The CLI arguments for a job; refuses unknown kinds, odd flags and path-like values."""
    if kind not in KINDS:
        raise InputError(f"unknown job kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    args = [*KINDS[kind], str(find_pack(pack))]
    for flag, value in (options or {}).items():
        if not _FLAG.match(str(flag)) or flag in _PATH_FLAGS:
            raise InputError(f"option {flag!r} is not allowed here", "use the training/eval option names, e.g. epochs")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool):  # false means the default for one-sided switches such as --force
                if item or flag in negatable_switches(kind):
                    args.append(f"--{flag}" if item else f"--no-{flag}")
                continue
            text = str(item)
            if not text or text.startswith(("-", ".", "~")) or "/" in text or "\\" in text or len(text) > 200:
                raise InputError(f"value {text!r} for {flag} is not allowed", "give names and numbers, not paths")
            args += [f"--{flag}", text]
    return args


class Job:
    """One child process and what it has said so far."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, args: list[str]):
        self.id = next(self._ids)
        self.kind, self.args = kind, args
        self.started = time.time()
        self.lines: deque[str] = deque(maxlen=200)
        self.progress = 0.0
        self.status = "running"
        self.eval_run: int | None = None
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100", "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "lorebook", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while block := self.process.stdout.read1(4096):
            buffer += block
            *complete, buffer = re.split(rb"[\r\n]", buffer)
            for raw in complete:
                self._line(raw.decode("utf-8", errors="replace").strip())
        self._line(buffer.decode("utf-8", errors="replace").strip())
        code = self.process.wait()
        self.status = "done" if code == 0 else ("cancelled" if code < 0 else "failed")
        if code == 0:
            self.progress = 1.0

    def _line(self, line: str) -> None:
        if not line:
            return
        match = _PERCENT.search(line)
        if match:
            self.progress = min(1.0, int(match.group(1)) / 100)
        run = re.search(r"stored as eval run (\d+)", line)
        if run:
            self.eval_run = int(run.group(1))
        if not match or not self.lines or not _PERCENT.search(self.lines[-1]):
            self.lines.append(line)
        else:
            self.lines[-1] = line  # one progress bar line, updated in place

    def summary(self) -> dict:
        return {"id": self.id, "kind": self.kind, "args": self.args[len(KINDS[self.kind]):], "status": self.status,
                "progress": round(self.progress, 3), "started": self.started, "eval_run": self.eval_run,
                "log": list(self.lines)[-20:]}


class JobManager:
    def __init__(self):
        self.jobs: dict[int, Job] = {}

    def start(self, kind: str, pack: str, options: dict) -> Job:
        job = Job(kind, command_args(kind, pack, options))
        self.jobs[job.id] = job
        return job

    def get(self, job_id: int) -> Job:
        if job_id not in self.jobs:
            raise FileNotFoundError(f"job {job_id}")
        return self.jobs[job_id]


@router.get("/api/packs")
def packs() -> list[str]:
    return list_packs()


@router.post("/api/packs")
async def upload_pack(file: UploadFile = File(...)) -> dict:
    name = Path(file.filename or "").name
    if not _PACK.match(name):
        raise InputError(f"pack file name {name!r} is not allowed", "name it like oscars.jsonl (letters, digits, ._-)")
    data = await file.read()
    try:
        for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if line.strip():
                json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{name} is not UTF-8 JSON Lines (line {number})", "one JSON object per line") from None
    target = pack_dir() / name
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return {"name": name, "bytes": len(data)}


@router.post("/api/jobs")
async def start_job(request: Request) -> dict:
    body = await request.json()
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object", "send {\"kind\": \"teach\", \"pack\": ..., \"options\": {}}")
    job = request.app.state.lorebook.jobs.start(body.get("kind"), body.get("pack"), body.get("options") or {})
    return job.summary()


@router.get("/api/jobs")
def list_jobs(request: Request) -> list[dict]:
    return [job.summary() for job in reversed(request.app.state.lorebook.jobs.jobs.values())]


@router.get("/api/jobs/{job_id}")
def get_job(request: Request, job_id: int) -> dict:
    return request.app.state.lorebook.jobs.get(job_id).summary()


@router.post("/api/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: int) -> dict:
    job = request.app.state.lorebook.jobs.get(job_id)
    if job.process.poll() is None:
        job.process.terminate()
    return job.summary()


@router.get("/api/jobs/{job_id}/events")
async def job_events(request: Request, job_id: int) -> StreamingResponse:
    """Server-sent events: the job's summary whenever it changes, until it ends."""
    job = request.app.state.lorebook.jobs.get(job_id)

    async def events():
        last = None
        while True:
            summary = job.summary()
            text = json.dumps(summary)
            if text != last:
                yield f"data: {text}\n\n"
                last = text
            if summary["status"] != "running" or await request.is_disconnected():
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/api/eval/runs")
def eval_runs() -> list[dict]:
    from lorebook.evaluate import store

    db = store.connect()
    try:
        ids = [row[0] for row in db.execute("SELECT id FROM eval_runs ORDER BY id DESC LIMIT 50")]
        return [store.get_run(db, run_id) for run_id in ids]
    finally:
        db.close()


@router.get("/api/eval/{run_id}/report")
def eval_report(run_id: int) -> FileResponse:
    """The run's self-contained HTML report (plots embedded), written into the data dir on first request."""
    from lorebook.evaluate.report import write_report

    folder = paths.subdir("serve") / "reports" / str(run_id)
    if not (folder / "report.html").exists():
        write_report(run_id, folder)
    return FileResponse(folder / "report.html", media_type="text/html")
