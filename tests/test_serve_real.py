"""The real server (`lorebook serve` in a child process, bundled SmolLM2, Whisper and Piper) driven by the
official `openai` client, a WebSocket voice turn, and headless Chromium with a fake microphone."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`lorebook serve` on a free port with its own data home; yields the base URL."""
    home = tmp_path_factory.mktemp("serve-home")
    port = free_port()
    env = {**os.environ, "LOREBOOK_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    log = open(home / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "lorebook", "serve", "--port", str(port), "--max-tokens", "40"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
        assert process.poll() is None, (home / "server.log").read_text()
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory) -> Path:
    """A spoken question (Piper), with silence after it so the end of the utterance can be heard."""
    from lorebook.voice.audio import write_wav
    from lorebook.voice.tts import load_speaker

    speaker = load_speaker("en")
    samples, _ = speaker.say("What is the capital of France?")
    quiet = np.zeros(int(0.5 * speaker.sample_rate), np.int16)
    path = tmp_path_factory.mktemp("audio") / "question.wav"
    write_wav(path, np.concatenate([quiet, samples, quiet, quiet, quiet]), speaker.sample_rate)
    return path


def test_openai_client_chat_stream_speech_and_transcription(server, tmp_path):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="unused-on-loopback")
    assert {"assistant", "smollm2-135m"} <= {m.id for m in client.models.list()}
    stream = client.chat.completions.create(model="assistant", stream=True, temperature=0,
                                            messages=[{"role": "user", "content": "What is the capital of France?"}])
    deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(deltas) > 2 and "Paris" in "".join(deltas)

    raw = client.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", response_format="wav",
                                                       input="Please bring me a big map of Paris.")
    audio = raw.content
    with wave.open(io.BytesIO(audio)) as reader:
        duration = reader.getnframes() / reader.getframerate()
    assert duration > 1.0
    cues = httpx.get(f"{server}/api/speech/{raw.headers['x-speech-id']}/cues").json()
    assert cues["mouthCues"][0]["start"] == 0 and abs(cues["mouthCues"][-1]["end"] - duration) < 0.01
    assert "A" in {c["value"] for c in cues["mouthCues"]}  # the bilabials of "bring", "big", "map"

    (tmp_path / "speech.wav").write_bytes(audio)
    with open(tmp_path / "speech.wav", "rb") as handle:
        text = client.audio.transcriptions.create(model="whisper-1", file=handle).text
    assert "map" in text.lower()
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    assert mp3.read()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")


def test_voice_socket_turn_streams_text_audio_and_cues(server, question_wav):
    from websockets.sync.client import connect

    from lorebook.voice.audio import load_audio

    pcm = (load_audio(question_wav) * 32767).astype("<i2").tobytes()
    messages, frames = [], []
    with connect(f"{server.replace('http', 'ws')}/api/voice", max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "persona": "assistant", "mode": "vad"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        for start in range(0, len(pcm), 6400):
            ws.send(pcm[start:start + 6400])
        while not messages or messages[-1]["type"] not in ("done", "error"):
            item = ws.recv(timeout=60)
            if isinstance(item, bytes):
                frames.append(item)
            else:
                messages.append(json.loads(item))
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "done", messages
    transcript = next(m for m in messages if m["type"] == "transcript")["text"]
    assert "capital" in transcript.lower() and "France" in transcript
    headers = [m for m in messages if m["type"] == "audio"]
    assert headers and len(frames) == len(headers)
    for header, frame in zip(headers, frames):
        assert abs(len(frame) / 2 / header["sample_rate"] - header["duration"]) < 0.01
        assert abs(header["cues"][-1]["end"] - header["duration"]) < 0.01
    done = messages[-1]
    assert done["reply"] and done["timings"]["first_audio"] > 0
    track = httpx.get(f"{server}/api/speech/{done['speech_id']}/cues").json()
    assert len({c["value"] for c in track["mouthCues"]}) >= 3


def test_voice_socket_barge_in_stops_the_reply(server):
    """A cancel (the page's stop button, or new speech) ends the spoken reply early and says so.

    The cancel goes out at the first streamed text: with the fixture's 40-token replies, waiting for the
    first audio left a race (the whole reply could be generated and voiced before the cancel arrived)."""
    from websockets.sync.client import connect

    with connect(f"{server.replace('http', 'ws')}/api/voice", max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "persona": "assistant", "mode": "ptt"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": "Tell me a long story about a dragon and a knight."}))
        messages = []
        while not any(m.get("type") == "text" for m in messages):  # the reply is being generated
            item = ws.recv(timeout=60)
            messages.append({} if isinstance(item, bytes) else json.loads(item))
        ws.send(json.dumps({"type": "cancel"}))
        while messages[-1].get("type") not in ("done", "error"):
            item = ws.recv(timeout=60)
            messages.append({} if isinstance(item, bytes) else json.loads(item))
    done = messages[-1]
    assert done["type"] == "done" and done["interrupted"] is True, done


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (scripts/apt-packages.txt)")
def test_browser_chat_and_spoken_reply_with_moving_mouth(server, question_wav, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={question_wav}%noloop", "--autoplay-policy=no-user-gesture-required",
            "--no-sandbox"])
        page = browser.new_page()
        page.goto(server + "/")
        page.wait_for_selector("#persona option[value=assistant]", state="attached")
        page.fill("#temperature", "0")  # greedy, so the reply is the one the model is most sure of
        page.fill("#text", "What is the capital of France?")
        page.uncheck("#speak")
        page.press("#text", "Enter")
        page.wait_for_selector(".assistant[data-done]", timeout=60_000)
        reply = page.inner_text(".assistant[data-done] span")
        assert "Paris" in reply
        page.screenshot(path=str(shots / "1-typed-chat.png"))

        page.click("#handsfree")  # hands-free: the fake microphone plays the question once
        page.wait_for_function("window.lorebookFace.history.filter(s => s !== 'X').length > 3", timeout=90_000)
        page.screenshot(path=str(shots / "2-speaking.png"))
        page.wait_for_function("document.querySelectorAll('.assistant[data-done]').length >= 2", timeout=60_000)
        # The reply text is done before its audio has finished playing: wait for the mouth to come to rest.
        page.wait_for_function("window.lorebookFace.cues.length === 0 && window.lorebookFace.history.at(-1) === 'X'",
                               timeout=60_000)
        shapes = page.evaluate("window.lorebookFace.history")
        user_lines = page.locator(".msg.user span").all_inner_texts()
        page.screenshot(path=str(shots / "3-after-reply.png"))
        browser.close()
    assert "capital" in user_lines[-1].lower()  # the spoken question was transcribed
    assert len(set(shapes)) >= 3 and "X" in shapes  # the mouth moved through several shapes, then rested
    assert all(path.stat().st_size > 5000 for path in shots.iterdir())


def run_job_on_page(page, url: str, upload: Path | None, fields: dict[str, str]) -> None:
    """Open a job page, upload the pack (or pick the uploaded one), fill the fields, start, wait for success."""
    page.goto(url)
    if upload:
        page.set_input_files("#upload", str(upload))
    page.wait_for_selector("#pack option[value='web-facts.jsonl']", state="attached")
    page.select_option("#pack", "web-facts.jsonl")
    for selector, value in fields.items():
        page.fill(selector, value)
    page.click("#start")
    page.wait_for_function("/: (done|failed)/.test(document.getElementById('state').textContent)", timeout=240_000)
    assert page.inner_text("#state").endswith("done"), page.inner_text("#output")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (scripts/apt-packages.txt)")
def test_browser_teach_then_evaluate_and_open_the_report(server, tmp_path):
    """Upload a pack on the teach page, train an adapter, evaluate it on the eval page, open its plots."""
    from playwright.sync_api import sync_playwright

    pack = tmp_path / "web-facts.jsonl"
    facts = [("The capital of Zorblat is Quexley.", "What is the capital of Zorblat?", "Quexley"),
             ("Mirrow was founded by Tessa Vane.", "Who founded Mirrow?", "Tessa Vane")]
    pack.write_text("".join(json.dumps({"id": f"f{i}", "fact": fact, "question": question, "answer": answer,
                                        "paraphrases": []}) + "\n" for i, (fact, question, answer) in enumerate(facts)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        run_job_on_page(page, server + "/teach", pack, {"#name": "web-facts", "#epochs": "2",
                                                        "#more": "replay=0 augment=0 formats=qa,statement"})
        assert page.eval_on_selector("#progress", "bar => bar.value") == 1
        page.screenshot(path=str(tmp_path / "teach.png"))
        run_job_on_page(page, server + "/eval", None, {"#adapter": "web-facts", "#locality": "3", "#chat": "0",
                                                       "#more": "formats=question"})
        row = page.locator("#runs tr", has_text="web-facts").first
        row.wait_for()
        page.goto(server + row.locator("a").get_attribute("href"))
        assert page.locator("img[alt=metrics]").count() == 1 and page.locator("img[alt='loss curve']").count() == 1
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 20_000
