"""Teachers: what writes the turns. A local engine (batched), an OpenAI-compatible URL, or Batch API files.

Every teacher has `generate(message_lists, options, key, ids) -> list[str]`: one reply per chat, in
order. `key` names the round (first conversation, turn, side) and `ids` the conversations, so the
Batch API teacher can name its requests and find their results again on the next run.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lorebook.errors import InputError, LorebookError
from lorebook.models.engine import GenerationOptions


class LocalTeacher:
    """A model loaded through the engine; `batched` generates all conversations of a round together."""

    def __init__(self, engine, batched: bool = True):
        self.engine = engine
        self.batched = batched
        self.name = f"local:{engine.model_name or getattr(engine, 'name', 'model')}"

    def generate(self, message_lists, options: GenerationOptions, key: str = "", ids=None) -> list[str]:
        if self.batched:
            return self.engine.chat_batch(message_lists, options)
        return [self.engine.chat(messages, options).text for messages in message_lists]


def _request_body(model: str, messages: list[dict], options: GenerationOptions) -> dict:
    return {"model": model, "messages": messages, "temperature": options.temperature, "top_p": options.top_p,
            "max_tokens": options.max_tokens}


def _reply_text(body: dict) -> str:
    """The assistant text of a chat-completion response body."""
    return body["choices"][0]["message"]["content"] or ""


class UrlTeacher:
    """Any OpenAI-compatible server (`lorebook serve`, llama.cpp server, Ollama, vLLM, OpenAI): URL#model."""

    def __init__(self, target: str, concurrency: int = 4, timeout: float = 120.0):
        try:
            import httpx
        except ImportError:
            raise LorebookError("a URL teacher needs httpx", "pip install 'lorebook[synth]'") from None
        url, _, model = target.partition("#")
        self.url = url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions" if self.url.endswith("/v1") else "/v1/chat/completions"
        self.model = model or "default"
        self.name = f"url:{self.url}#{self.model}"
        headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"} if os.environ.get("OPENAI_API_KEY") else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.concurrency = max(1, concurrency)
        self._errors = (httpx.HTTPError, KeyError, IndexError, ValueError)

    def _one(self, messages: list[dict], options: GenerationOptions) -> str:
        try:
            response = self.client.post(self.url, json=_request_body(self.model, messages, options))
            response.raise_for_status()
            return _reply_text(response.json())
        except self._errors as exc:
            raise LorebookError(f"teacher {self.url} failed: {exc}",
                                "check the server is running and the URL ends in /v1 (append #model to pick one)") from None

    def generate(self, message_lists, options: GenerationOptions, key: str = "", ids=None) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda messages: self._one(messages, options), message_lists))


class BatchPending(LorebookError):
    """A round's requests were written; the run continues once their results file exists."""

    exit_code = 3


class BatchFileTeacher:
    """OpenAI Batch API by files: each round writes `requests-KEY.jsonl` and stops; rerun after results arrive.

    Because conversations are seeded and earlier rounds replay from their results files, a rerun reaches
    the same round with the same prompts and continues from there; nothing is generated twice.
    """

    def __init__(self, folder, model: str = "gpt-4o-mini"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.name = f"batch:{self.folder}#{model}"

    def request_path(self, key: str) -> Path:
        return self.folder / f"requests-{key}.jsonl"

    def result_path(self, key: str) -> Path:
        return self.folder / f"results-{key}.jsonl"

    def generate(self, message_lists, options: GenerationOptions, key: str = "", ids=None) -> list[str]:
        custom_ids = [f"{key}-conv{i}" for i in (ids if ids is not None else range(len(message_lists)))]
        results = self.result_path(key)
        if results.exists():
            found = read_results(results)
            missing = [c for c in custom_ids if c not in found]
            if missing:
                raise InputError(f"{results} lacks {len(missing)} of {len(custom_ids)} results (e.g. {missing[0]})",
                                 f"download the complete output of the batch made from {self.request_path(key).name}")
            return [found[c] for c in custom_ids]
        write_requests(self.request_path(key), custom_ids, message_lists, options, self.model)
        raise BatchPending(f"wrote {len(custom_ids)} requests to {self.request_path(key)}",
                           f"submit it to the OpenAI Batch API (endpoint /v1/chat/completions), save the output "
                           f"file as {results}, then run the same command again")


def write_requests(path: Path, custom_ids, message_lists, options: GenerationOptions, model: str) -> None:
    """Batch API input: one POST /v1/chat/completions request per line (written atomically)."""
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for custom_id, messages in zip(custom_ids, message_lists):
            line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                    "body": _request_body(model, messages, options)}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    partial.replace(path)


def read_results(path: Path) -> dict[str, str]:
    """Batch API output: custom_id → reply text; failed requests are reported by line."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            response = record.get("response") or {}
            if record.get("error") or response.get("status_code", 200) != 200:
                raise InputError(f"{path}:{number}: request {record.get('custom_id')} failed: "
                                 f"{record.get('error') or response.get('status_code')}",
                                 "resubmit the failed requests and merge their results into this file")
            found[record["custom_id"]] = _reply_text(response["body"])
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise InputError(f"{path}:{number}: not a Batch API result line",
                             "use the output file the Batch API produced, unchanged") from None
    return found


class SideTeachers:
    """A different teacher for each side: the side you train on from a strong (slow) model, the other side
    from a cheap one. The dialogue loop asks `for_role(role)` before each round."""

    def __init__(self, agent, traveller):
        self.agent, self.traveller = agent, traveller
        self.name = f"agent={agent.name}; traveller={traveller.name}"

    def for_role(self, role: str):
        return self.agent if role == "agent" else self.traveller


def make_teacher(target: str, engine_loader=None, batched: bool = True):
    """A teacher from a --teacher value: a model name/path, an http(s) URL[#model], or batch:FOLDER[#model]."""
    if target.startswith(("http://", "https://")):
        return UrlTeacher(target)
    if target.startswith("batch:"):
        folder, _, model = target[len("batch:"):].partition("#")
        if not folder:
            raise InputError("--teacher batch: needs a folder", "e.g. --teacher batch:synth-batches#gpt-4o-mini")
        return BatchFileTeacher(folder, model or "gpt-4o-mini")
    return LocalTeacher(engine_loader(target), batched=batched)
