"""Voice: speech-to-text (faster-whisper), text-to-speech (Piper, espeak-ng), voice activity (Silero)
and the streaming voice turn that joins them to a chat engine. Every model is bundled; nothing downloads.

    audio.py     decode any audio file to 16 kHz mono float32, in bounded blocks; write 16-bit WAV
    models.py    where the bundled Whisper models and Piper voice live (Whisper base reassembled once)
    stt.py       Transcriber: utterances in memory, long files in quiet-cut windows
    vad.py       streaming Silero VAD and the end-of-utterance detector
    text.py      strip markup/emoji before speaking; split streamed text into sentences
    tts.py       Piper and espeak-ng speakers producing PCM chunks with phoneme timings
    pipeline.py  VoicePipeline: utterance → STT → LLM stream → sentence TTS, with barge-in
    live.py      microphone/speaker loop around the pipeline
"""
