"""Server benchmark: 8 concurrent streaming chats plus 2 voice turns against one `lorebook serve`.

    .venv/bin/python bench/serve.py [--chats 8] [--voice 2] [--max-tokens 64]

Starts the real server in a child process (bundled SmolLM2, Whisper tiny.en, Piper), then in one run:
  1. baseline: the same chats sent one at a time (what a server without concurrent slots gives the
     last client in line), with the official `openai` client, streaming;
  2. load: all chats at once through `AsyncOpenAI` while the voice turns stream a spoken question
     (Piper WAV) over the WebSocket `/api/voice` at real-time pace.
Reports errors, time to first token (p50/p95) for chats, first reply audio for voice turns, total wall
time and tokens per second, and the ratio of concurrent to sequential completion time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lorebook import paths

QUESTIONS = [
    "What is the capital of France?", "Name three colors of the rainbow.", "How many legs does a spider have?",
    "Why is the sky blue?", "Give me a tip for learning Spanish.", "What do bees make?",
    "What is the boiling point of water?", "Who wrote Romeo and Juliet?", "What is a prime number?",
    "Suggest a name for a pet cat.", "What is the largest ocean?", "How do plants make food?",
]
VOICE_QUESTIONS = ["Could you tell me what the capital city of France is called?",
                   "How many days are there in a leap year?"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def start_server(home: Path, port: int, max_tokens: int) -> subprocess.Popen:
    env = {**os.environ, "LOREBOOK_HOME": str(home), "LOREBOOK_MODELS": str(paths.models_dir())}  # reuse the cache
    log = open(home / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "lorebook", "serve", "--port", str(port),
                                "--max-tokens", str(max_tokens)], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
        if process.poll() is not None:
            raise SystemExit((home / "server.log").read_text())
    raise SystemExit("the server did not start in 180 s")


async def chat(client, question: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    first, pieces = None, 0
    try:
        stream = await client.chat.completions.create(
            model="assistant", stream=True, temperature=0, max_tokens=max_tokens,
            messages=[{"role": "user", "content": question}], stream_options={"include_usage": True})
        tokens = 0
        async for chunk in stream:
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - started
                pieces += 1
        return {"ttft": first, "total": time.perf_counter() - started, "tokens": tokens, "error": None}
    except Exception as exc:  # noqa: BLE001 (a benchmark counts failures instead of stopping)
        return {"ttft": first, "total": time.perf_counter() - started, "tokens": 0, "error": repr(exc)}


def voice_turn(url: str, wav: Path) -> dict:
    """Stream a spoken question at real-time pace; time from the end of the audio to the first reply audio."""
    from websockets.sync.client import connect

    from lorebook.voice.audio import load_audio

    pcm = (load_audio(wav) * 32767).astype("<i2").tobytes()
    block = 1024  # 32 ms of 16 kHz 16-bit audio
    try:
        with connect(url, max_size=None, open_timeout=60) as ws:
            ws.send(json.dumps({"type": "start", "persona": "assistant", "mode": "vad"}))
            assert json.loads(ws.recv(timeout=120))["type"] == "ready"
            started = time.perf_counter()
            for offset in range(0, len(pcm), block):
                ws.send(pcm[offset:offset + block])
                time.sleep(max(0.0, started + (offset + block) / 32000 - time.perf_counter()))
            sent = time.perf_counter()
            first_audio, done = None, None
            while done is None:
                item = ws.recv(timeout=120)
                if isinstance(item, bytes):
                    first_audio = first_audio or time.perf_counter()
                    continue
                message = json.loads(item)
                if message["type"] == "error":
                    return {"error": message["message"]}
                if message["type"] == "done":
                    done = message
        # The recording ends 1.5 s after speech; the server's own timings measure from end of speech.
        return {"error": None, "after_audio_sent": (first_audio or sent) - sent,
                "first_audio": done["timings"]["first_audio"], "reply": done["reply"]}
    except Exception as exc:  # noqa: BLE001
        return {"error": repr(exc)}


def make_voice_questions(folder: Path, count: int) -> list[Path]:
    from lorebook.voice.audio import write_wav
    from lorebook.voice.tts import PiperSpeaker

    speaker, files = PiperSpeaker(), []
    for index in range(count):
        samples, chunks = speaker.say(VOICE_QUESTIONS[index % len(VOICE_QUESTIONS)])
        rate = chunks[0].sample_rate
        pad = np.zeros(int(0.5 * rate), np.int16)
        files.append(write_wav(folder / f"v{index}.wav", np.concatenate([pad, samples, pad, pad, pad]), rate))
    return files


async def load_run(base: str, chats: int, wavs: list[Path], max_tokens: int) -> tuple[list, list, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="unused-on-loopback", max_retries=0, timeout=300)
    ws_url = base.replace("http", "ws") + "/api/voice"
    started = time.perf_counter()
    voice = [asyncio.to_thread(voice_turn, ws_url, wav) for wav in wavs]
    text = [chat(client, QUESTIONS[i % len(QUESTIONS)], max_tokens) for i in range(chats)]
    results = await asyncio.gather(*text, *voice)
    return results[:chats], results[chats:], time.perf_counter() - started


async def sequential_run(base: str, chats: int, max_tokens: int) -> tuple[list, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="unused-on-loopback", max_retries=0, timeout=300)
    started, results = time.perf_counter(), []
    for i in range(chats):
        result = await chat(client, QUESTIONS[i % len(QUESTIONS)], max_tokens)
        result["ttft"] = (result["ttft"] or 0) + (time.perf_counter() - started - result["total"])  # wait in line
        results.append(result)
    return results, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--voice", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    folder = Path(tempfile.mkdtemp(prefix="lorebook-bench-serve-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wavs = make_voice_questions(folder, args.voice)
    server = start_server(folder, port, args.max_tokens)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(sequential_run(base, 1, 8))  # warm-up: first token paths, slot creation
        voice_turn(base.replace("http", "ws") + "/api/voice", wavs[0])  # loads and warms Whisper and Piper
        sequential, seq_wall = asyncio.run(sequential_run(base, args.chats, args.max_tokens))
        chats, voices, wall = asyncio.run(load_run(base, args.chats, wavs, args.max_tokens))
    finally:
        server.terminate()
        server.wait(timeout=30)
    errors = [r["error"] for r in chats + voices if r["error"]]
    ttft = [r["ttft"] for r in chats if r["ttft"] is not None]
    seq_ttft = [r["ttft"] for r in sequential]
    tokens, seq_tokens = sum(r["tokens"] for r in chats), sum(r["tokens"] for r in sequential)
    print(f"\n{args.chats} streaming chats (max {args.max_tokens} tokens) + {args.voice} voice turns, one server")
    print("| run | errors | TTFT p50 s | TTFT p95 s | wall s | completion tokens/s |")
    print("|---|---|---|---|---|---|")
    print(f"| one at a time (baseline) | 0 | {statistics.median(seq_ttft):.2f} | {percentile(seq_ttft, 0.95):.2f} | "
          f"{seq_wall:.1f} | {seq_tokens / seq_wall:.1f} |")
    print(f"| concurrent chats + voice | {len(errors)} | {statistics.median(ttft):.2f} | {percentile(ttft, 0.95):.2f} | "
          f"{wall:.1f} | {tokens / wall:.1f} |")
    for index, turn in enumerate(voices):
        if not turn["error"]:
            print(f"voice turn {index}: first reply audio {turn['first_audio']:.2f} s after end of speech "
                  f"(server timing) under load; reply {turn['reply'][:60]!r}")
    print(f"\nconcurrent / sequential: TTFT p95 {percentile(ttft, 0.95) / percentile(seq_ttft, 0.95):.2f}x, "
          f"throughput {tokens / wall / (seq_tokens / seq_wall):.2f}x; errors: {errors or 'none'}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
