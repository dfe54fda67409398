"""`lorebook transcribe FILE`, `lorebook say TEXT -o out.wav`, `lorebook talk` (microphone or --in/--out)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import typer

from lorebook.cli.common import console, err_console, friendly_errors
from lorebook.errors import InputError
from lorebook.models.engine import ENGINES
from lorebook.voice.stt import SttConfig


def _help(config_class, name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(config_class) if f.name == name)


STT_MODEL = typer.Option(None, "--stt-model", help=_help(SttConfig, "model"))
LANGUAGE = typer.Option(None, "--language", "-l", help=_help(SttConfig, "language"))
VOICE = typer.Option(None, "--voice", "-v", help="en_US-joe-medium (Piper), espeak:LANG or a language code "
                     "such as es (espeak-ng), or a Piper .onnx file (default: the persona's voice)")
PERSONA = typer.Option(None, "--persona", "-p", help="persona name or YAML file (default: assistant)")


def transcribe(
    file: Path = typer.Argument(..., help="audio file: WAV, FLAC, MP3, OGG… any rate, mono or stereo"),
    stt_model: str = STT_MODEL,
    language: str = LANGUAGE,
    as_json: bool = typer.Option(False, "--json", help="print JSON with language, duration and timed segments"),
    output: Path = typer.Option(None, "--output", "-o", help="also write the text (or JSON) to this file"),
) -> None:
    """Write down what is said in an audio file (long recordings are processed in windows)."""
    from tqdm import tqdm

    from lorebook.voice.audio import audio_duration
    from lorebook.voice.stt import Transcriber

    duration = audio_duration(file)  # refuses non-audio before the model loads
    config = SttConfig(model=stt_model, language=language)
    with err_console.status(f"loading Whisper {config.model_name()}…"):
        transcriber = Transcriber(config)
    bar = tqdm(total=round(duration or 0), unit="s", desc="transcribing", file=sys.stderr,
               disable=not duration or duration < 60, bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s [{elapsed}<{remaining}]")

    def progress(done: float, total: float | None) -> None:
        bar.update(max(0, round(done) - bar.n))

    result = transcriber.transcribe_file(file, progress)
    bar.close()
    if as_json:
        body = json.dumps({"file": str(file), "language": result.language, "duration": round(result.duration, 2),
                           "model": config.model_name(), "text": result.text,
                           "segments": [dataclasses.asdict(s) for s in result.segments]}, ensure_ascii=False, indent=2)
    else:
        body = result.text
    if not result.text:
        err_console.print(f"[yellow]note:[/] no speech found in {file} ({result.duration:.1f} s of audio)")
    if body:
        console.print(body, markup=False)
    if output:
        output.write_text(body + "\n", encoding="utf-8")
    err_console.print(f"[dim]{result.duration:.1f} s of audio in {result.seconds:.1f} s "
                      f"(real-time factor {result.real_time_factor:.2f}), language {result.language}[/]")


def say(
    text: str = typer.Argument(..., help="the text to speak; '-' reads standard input"),
    out: Path = typer.Option(..., "--out", "-o", help="output file: .wav (16-bit mono) or .pcm (raw s16le)"),
    voice: str = VOICE,
    persona: str = PERSONA,
    timings: Path = typer.Option(None, "--timings", help="also write per-phoneme timings (mouth cues) as JSON"),
    cues: Path = typer.Option(None, "--cues", help="also write Rhubarb Lip Sync mouth cues (shapes A-H, X) as JSON"),
) -> None:
    """Speak text into a WAV file (Markdown, emoji and tags are not read aloud)."""
    from lorebook.voice.audio import write_wav
    from lorebook.voice.tts import load_speaker

    if text == "-":
        text = sys.stdin.read()
    if out.suffix.lower() not in (".wav", ".pcm", ".raw"):
        raise InputError(f"cannot write audio as {out.suffix or 'a file without extension'}", "use -o reply.wav or -o reply.pcm")
    from lorebook.voice.text import has_words, speakable

    if not has_words(speakable(text)):  # before loading a voice
        raise InputError("nothing to say: the text has no words once markup and emoji are removed",
                         "give text with words in it")
    language = "en"
    if persona:
        from lorebook.chat.persona import load_persona

        chosen = load_persona(persona)
        voice, language = voice or chosen.voice, chosen.language
    speaker = load_speaker(voice, language)
    samples, chunks = speaker.say(text)
    if out.suffix.lower() == ".wav":
        write_wav(out, samples, speaker.sample_rate)
    else:
        out.write_bytes(samples.astype("<i2").tobytes())
    if timings:
        phonemes, offset = [], 0.0
        for chunk in chunks:
            phonemes += [{"phoneme": p.phoneme, "start": round(p.start + offset, 4), "end": round(p.end + offset, 4)}
                     for p in chunk.phonemes]
            offset += chunk.duration
        timings.write_text(json.dumps({"sample_rate": speaker.sample_rate, "phonemes": phonemes}, ensure_ascii=False))
    if cues:
        from lorebook.voice.lipsync import cues_for_speech, rhubarb_json

        track = rhubarb_json(cues_for_speech(chunks), samples.size / speaker.sample_rate, out.name)
        cues.write_text(json.dumps(track, indent=1), encoding="utf-8")
    seconds = sum(c.seconds for c in chunks)
    err_console.print(f"wrote {out}: {samples.size / speaker.sample_rate:.1f} s of audio at {speaker.sample_rate} Hz, "
                      f"voice {speaker.name}, {len(chunks)} sentence(s) in {seconds:.2f} s")


def talk(
    persona: str = PERSONA,
    model: str = typer.Option(None, "--model", "-m", help="model name or path (default: the persona's)"),
    engine: str = typer.Option("torch", "--engine", "-e", help=f"generation engine: {', '.join(ENGINES)}"),
    option: list[str] = typer.Option(None, "--option", "-o", help="sampling option key=value (see `lorebook ask --help`)"),
    voice: str = VOICE,
    stt_model: str = STT_MODEL,
    language: str = LANGUAGE,
    question: Path = typer.Option(None, "--in", help="question recording; without it the microphone is used"),
    reply_file: Path = typer.Option(None, "--out", help="write the spoken reply here (.wav) when using --in"),
    no_log: bool = typer.Option(False, "--no-log", help="do not record the conversation in the log"),
    as_json: bool = typer.Option(False, "--json", help="with --in: print transcript, reply and timings as JSON"),
) -> None:
    """Speak with a persona: microphone and speakers, or one turn from --in question.wav to --out reply.wav."""
    from lorebook.voice.pipeline import VoicePipeline

    if question is not None and reply_file is None:
        raise InputError("--in needs --out", "e.g. lorebook talk --in question.wav --out reply.wav")
    if reply_file is not None and question is None:
        raise InputError("--out needs --in", "e.g. lorebook talk --in question.wav --out reply.wav")
    if reply_file is not None and reply_file.suffix.lower() != ".wav":
        raise InputError(f"reply file must be .wav, got {reply_file.name}", "use --out reply.wav")
    if question is None:
        from lorebook.voice.live import sound_devices

        sound_devices()  # no microphone: say so before loading models
    utterance = None
    if question is not None:  # check the recording before spending seconds on loading models
        from lorebook.voice.audio import load_audio
        from lorebook.voice.pipeline import utterance_from_file

        utterance = utterance_from_file(load_audio(question, max_seconds=300))
    stt = SttConfig(model=stt_model, language=language)
    with err_console.status("loading speech and language models…"):
        pipeline = VoicePipeline.for_persona(persona, model, None, engine, stt, voice, option, log=not no_log)
    if utterance is not None:
        _file_turn(pipeline, utterance.audio, reply_file, as_json)
        return
    from lorebook.voice.live import converse

    err_console.print(f"talking with [bold]{pipeline.session.persona.name}[/]; speak, pause to let it answer. "
                      "Ctrl-C quits.")
    converse(pipeline, _print_event)


def _print_event(event) -> None:
    if event.kind == "transcript":
        console.print(f"[bold]you:[/] {event.transcript.text}")
    elif event.kind == "text":
        sys.stdout.write(event.text)
        sys.stdout.flush()
    elif event.kind == "done":
        sys.stdout.write(" [interrupted]\n" if event.interrupted else "\n")


def _file_turn(pipeline, utterance, reply_file: Path, as_json: bool) -> None:
    import numpy as np

    from lorebook.voice.audio import write_wav

    chunks, transcript, done = [], None, None
    for event in pipeline.respond(utterance):
        if event.kind == "transcript":
            transcript = event.transcript
            if not as_json:
                console.print(f"[bold]you:[/] {transcript.text}")
                sys.stdout.write(f"{pipeline.session.persona.name}: ")
        elif event.kind == "text" and not as_json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif event.kind == "audio":
            chunks.append(event.chunk)
        elif event.kind == "done":
            done = event
    if not chunks:
        raise InputError("the model's reply had nothing to speak", "try again or use another persona")
    rate = chunks[0].sample_rate
    pause = np.zeros(int(0.15 * rate), dtype=np.int16)  # a breath between sentences
    write_wav(reply_file, np.concatenate([part for c in chunks for part in (c.samples, pause)]), rate)
    if as_json:
        console.print_json(json.dumps({"transcript": transcript.text, "language": transcript.language,
                                       "reply": done.reply, "reply_wav": str(reply_file),
                                       "timings": dataclasses.asdict(done.timings)}, ensure_ascii=False))
        return
    sys.stdout.write("\n")
    t = done.timings
    err_console.print(f"[dim]wrote {reply_file} ({t.reply_audio_seconds:.1f} s); STT {t.stt:.2f} s, first token "
                      f"{t.llm_first_token:.2f} s, first audio {t.first_audio:.2f} s, whole turn {t.total:.2f} s[/]")


def register(app: typer.Typer) -> None:
    app.command()(friendly_errors(transcribe))
    app.command()(friendly_errors(say))
    app.command()(friendly_errors(talk))
