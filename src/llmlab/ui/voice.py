"""Speech, offline: ``speak`` reads text aloud into a WAV file, ``transcribe`` turns a WAV file into text.

``speak`` runs eSpeak NG (Debian's ``espeak-ng`` package, a formant synthesiser: robotic but small,
fast and offline) as a subprocess. Text past ``MAX_CHARS`` is cut at a sentence end, so one long
reply cannot keep the synthesiser busy for minutes.

``transcribe`` uses PocketSphinx (PyPI ``pocketsphinx`` >= 5, an optional dependency in the ``ui``
extra). It was chosen because it is the one speech-to-text engine these registries give whole: its
wheel ships the US English acoustic model, dictionary and language model (about 30 MB), so nothing
is fetched at run time. The others checked need a download at run time: ``vosk``'s wheel has no
model (models come from its own site), ``openai-whisper`` and ``faster-whisper`` fetch their weights
on first use from their hub, and Debian's ``python3-whisper`` is an unrelated time-series database;
Debian's own ``pocketsphinx`` + ``pocketsphinx-en-us`` packages are the same engine and model.

What it gives up: PocketSphinx is a 2010s HMM recogniser, far less accurate than Whisper, US
English only. On eSpeak's synthetic voice it gets short plain words and misses most others (in a
check of eight phrases: "one two three four five" was heard as "well two three four five", "red
green blue" as "green blue", "good morning" as "org"); on a person's voice it does better, but it
is no dictation engine. Input is WAV with 16-bit samples (what browsers' recorders and gradio's
microphone give); other formats are refused, not converted. Nothing here imports gradio.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
import wave
from pathlib import Path

from ..errors import LlmlabError, MissingDependencyError

MAX_CHARS = 3000  # about three minutes of speech at eSpeak's pace
RATE = 16_000     # the sample rate PocketSphinx's bundled model was trained at


class SpeechError(LlmlabError):
    """Speech could not be made or read (the synthesiser is missing or failed, a file is not WAV)."""


def cap(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` with its whitespace collapsed, cut at the last sentence end (else space) before ``limit``.

    >>> cap("One. Two three.", limit=10)
    'One.'
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(p) for p in (". ", "! ", "? ", "\n"))
    return head[:end + 1] if end > 0 else head[:head.rfind(" ")] if " " in head else head


def speak(text: str, out_dir: str | Path, *, voice: str = "en-us", speed: int = 160) -> Path:
    """Read ``text`` aloud with espeak-ng into a new WAV file in ``out_dir`` and return its path."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError("reading aloud needs espeak-ng, which is not installed: apt-get install espeak-ng")
    text = cap(text or "")
    if not text:
        raise SpeechError("there is no text to read aloud")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"speech-{uuid.uuid4().hex[:12]}.wav"
    # the text goes on stdin, so a reply that starts with "-" is not read as an option
    try:
        done = subprocess.run([exe, "-v", voice, "-s", str(int(speed)), "-w", str(path), "--stdin"],
                              input=text, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise SpeechError("espeak-ng took over two minutes to read the text aloud") from exc
    if done.returncode != 0 or not path.is_file():
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise SpeechError(f"espeak-ng could not read the text aloud: {why}")
    return path


def _samples(wav_path: Path):
    """The file's audio as 16 kHz mono 16-bit samples."""
    import numpy as np
    from scipy.signal import resample_poly

    try:
        with wave.open(str(wav_path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"{wav_path.name} is not a WAV file that can be read: {exc}") from exc
    if width != 2:
        raise SpeechError(f"{wav_path.name} has {8 * width}-bit samples; speech input needs 16-bit WAV")
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float32).reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        from math import gcd

        g = gcd(RATE, rate)
        audio = resample_poly(audio, RATE // g, rate // g)
    return np.clip(audio, -32768, 32767).astype("<i2")


def transcribe(wav_path: str | Path) -> str:
    """The words PocketSphinx hears in a WAV file (lower case, no punctuation; "" for none)."""
    wav_path = Path(wav_path)
    if not wav_path.is_file():
        raise SpeechError(f"no audio file at {wav_path}")
    try:
        import pocketsphinx
    except ImportError as exc:
        raise MissingDependencyError("pocketsphinx", "ui") from exc
    audio = _samples(wav_path)
    # a new decoder per file (about 0.4 s): a shared one adapts its noise and loudness estimates to
    # what it heard before, so the same file would be heard differently depending on who spoke first
    decoder = pocketsphinx.Decoder(samprate=RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(audio.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""
