"""The server's HTTP API against the app in-process (httpx through Starlette's TestClient), tiny model."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lorebook.serve.app import create_app
from lorebook.serve.config import ServeConfig


@pytest.fixture()
def tiny_persona(lorebook_home, tiny_model_dir) -> str:
    """A user persona on the tiny random model (persona files may name paths; requests may not)."""
    folder = lorebook_home / "personas"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(f"model: {tiny_model_dir}\nsystem: You are terse.\n"
                                      "options: {temperature: 0, max_tokens: 12}\n", encoding="utf-8")
    return "tiny"


def client(**settings) -> TestClient:
    return TestClient(create_app(ServeConfig(preload=False, voice=False, **settings)))


def chat(api: TestClient, **body):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}], **body}
    return api.post("/v1/chat/completions", json=body)


def test_models_lists_personas_and_bundled_models(tiny_persona):
    ids = {card["id"] for card in client().get("/v1/models").json()["data"]}
    assert {"assistant", "customs-agent-es", "smollm2-135m", "tiny"} <= ids


def test_chat_completion_and_stream_agree(tiny_persona):
    with client() as api:
        whole = chat(api).json()
        assert whole["object"] == "chat.completion" and whole["model"] == "tiny"
        text = whole["choices"][0]["message"]["content"]
        assert whole["usage"]["completion_tokens"] > 0 and text
        with api.stream("POST", "/v1/chat/completions", json={
                "model": "tiny", "messages": [{"role": "user", "content": "Hello there"}], "stream": True,
                "stream_options": {"include_usage": True}}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == text  # greedy persona: the stream carries exactly the non-streamed reply
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("stop", "length")


@pytest.mark.parametrize("body, status, words", [
    ({"model": "/etc/passwd"}, 400, "not a name"),
    ({"model": "no-such-model"}, 404, "unknown model"),
    ({"messages": []}, 400, "messages is empty"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ({"temperature": 9}, 400, "temperature"),
    ({"max_tokens": -3}, 400, "max_tokens"),
])
def test_bad_chat_requests_get_one_line_errors(tiny_persona, body, status, words):
    response = chat(client(), **body)
    assert response.status_code == status
    message = response.json()["error"]["message"]
    assert words in message and "\n" not in message


def test_invalid_json_and_oversized_bodies_are_refused(tiny_persona):
    api = client(max_body_mb=0.01)
    response = api.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    big = api.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x" * 20000}]})
    assert big.status_code == 413


def test_api_key_is_checked_on_every_route(tiny_persona):
    api = client(api_key="correct-horse-battery")
    for path in ("/v1/models", "/", "/static/app.js", "/api/personas", "/api/jobs"):
        assert api.get(path).status_code == 401, path
    assert api.get("/v1/models", headers={"Authorization": "Bearer wrong-key-123"}).status_code == 401
    assert api.get("/v1/models", headers={"Authorization": "Bearer correct-horse-battery"}).status_code == 200
    page = api.get("/?key=correct-horse-battery")  # opening the page with the key sets an HttpOnly cookie
    assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
    assert api.get("/static/app.js").status_code == 200  # the cookie now authorizes the page's own files
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client(api_key="correct-horse-battery").websocket_connect("/api/voice") as socket:
            socket.receive_json()


def test_no_cors_unless_configured(tiny_persona):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client().options("/v1/models", headers=preflight).headers
    allowed = client(cors_origins="http://evil.example").options("/v1/models", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "http://evil.example"


def test_public_bind_needs_a_key():
    with pytest.raises(Exception, match="without an API key"):
        ServeConfig(host="0.0.0.0").check()
    ServeConfig(host="0.0.0.0", api_key="long-enough-key").check()
    from lorebook.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "--api-key" in result.output and "Traceback" not in result.output


def test_speech_and_static_routes_never_leave_their_folders(tiny_persona):
    api = client()
    assert api.get("/api/speech/..%2F..%2Fetc%2Fpasswd/cues").status_code in (400, 404)
    assert api.get("/api/speech/0123456789abcdef01234567/cues").status_code == 404
    assert api.get("/static/..%2Fapp.py").status_code == 404
    assert api.get("/static/face.js").status_code == 200


def test_pack_upload_stays_in_data_dir_and_jobs_refuse_paths(tiny_persona, lorebook_home):
    api = client()
    bad_name = api.post("/api/packs", files={"file": ("../../evil.jsonl", b'{"q": 1}\n')})
    assert bad_name.status_code == 200  # the directory part is dropped: only the base name is used
    assert (lorebook_home / "serve" / "packs" / "evil.jsonl").exists()
    assert not (lorebook_home.parent / "evil.jsonl").exists()
    assert api.post("/api/packs", files={"file": ("x.jsonl", b"not json\n")}).status_code == 400
    for body in ({"kind": "rm", "pack": "evil.jsonl"}, {"kind": "teach", "pack": "../x.jsonl"},
                 {"kind": "teach", "pack": "evil.jsonl", "options": {"config": "a"}},
                 {"kind": "eval", "pack": "evil.jsonl", "options": {"model": "/etc/passwd"}}):
        response = api.post("/api/jobs", json=body)
        assert response.status_code == 400, body
    assert "evil.jsonl" in api.get("/api/packs").json()


def test_job_runs_the_cli_and_reports_its_end(tiny_persona):
    with client() as api:
        api.post("/api/packs", files={"file": ("bad.jsonl", b'{"question": "q?"}\n')})
        job = api.post("/api/jobs", json={"kind": "teach", "pack": "bad.jsonl",
                                          "options": {"name": "x", "epochs": 1}}).json()
        with api.stream("GET", f"/api/jobs/{job['id']}/events") as response:
            states = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert states[-1]["status"] == "failed"  # a pack without answers: the CLI's one-line error, exit 1
    assert any("error" in line for line in states[-1]["log"])


def test_job_switches_follow_the_cli():
    """Unticked boxes mean the default: one-sided switches are left out, two-sided ones get `--no-`."""
    from lorebook.serve.jobs import command_args

    args = command_args("teach", "oscars-2023.jsonl", {"name": "x", "force": False, "probe": False, "resume": True})
    assert args[2:] == ["--name", "x", "--no-probe", "--resume"]
    assert command_args("eval", "oscars-2023.jsonl", {"baseline": False})[3:] == ["--no-baseline"]


def test_a_persona_with_moments_answers_with_its_picked_candidate(tiny_persona, lorebook_home, monkeypatch):
    """Candidates go through the scheduler (sampled ones with distinct seeds) and the picked one is the answer,
    whole in the JSON reply and in one chunk of the stream."""
    from lorebook.chat import moments

    outlines = lorebook_home / "outlines.jsonl"
    outlines.write_text(json.dumps({"messages": [{"role": "user", "content": "Hello there"},
                                                 {"role": "assistant", "content": "Hi."}]}) + "\n", encoding="utf-8")
    recipe = (lorebook_home / "personas" / "tiny.yaml").read_text(encoding="utf-8")
    (lorebook_home / "personas" / "picky.yaml").write_text(
        recipe + f"moments: {{file: {outlines}, candidates: 4, temperature: 1.0}}\n", encoding="utf-8")
    seen = []

    class LastCandidate:
        def __init__(self, config):
            pass

        def pick(self, messages, candidates):
            seen.append(candidates)
            return candidates[-1]

    monkeypatch.setattr(moments, "MomentPicker", LastCandidate)
    with client() as api:
        whole = chat(api, model="picky").json()
        with api.stream("POST", "/v1/chat/completions", json={
                "model": "picky", "messages": [{"role": "user", "content": "Hello there"}], "stream": True}) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert len(seen) == 2 and all(len(found) == 4 for found in seen)
    assert len(set(seen[0][1:])) > 1  # seeds differ per sampled candidate
    assert whole["choices"][0]["message"]["content"] == seen[0][-1] and whole["usage"]["completion_tokens"] > 0
    pieces = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert [p for p in pieces if p] == [seen[1][-1]]
