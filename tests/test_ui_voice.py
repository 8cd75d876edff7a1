"""Speech: eSpeak NG writes real WAV files, its absence is one clear line, and PocketSphinx (the
optional speech input) hears the words eSpeak said."""

from __future__ import annotations

import shutil
import wave

import pytest

from llmlab.ui.voice import MAX_CHARS, SpeechError, cap, speak, transcribe

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="speech output needs Debian's espeak-ng: apt-get install espeak-ng")


@needs_espeak
def test_speak_writes_a_wav_file_with_speech_in_it(tmp_path):
    path = speak("The arena has two models. Vote for the better answer.", tmp_path / "audio")
    assert path.parent == tmp_path / "audio" and path.suffix == ".wav"
    with wave.open(str(path)) as w:
        seconds = w.getnframes() / w.getframerate()
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
    assert 1.5 < seconds < 15
    # a reply that looks like an option is read, not parsed
    assert speak("-v is not an option here", tmp_path) != path


def test_long_text_is_cut_at_a_sentence_end():
    text = "This sentence is about forty characters. " * 200
    short = cap(text)
    assert len(short) <= MAX_CHARS and short.endswith("characters.")
    assert cap("no  sentence\nends   here", limit=15) == "no sentence"
    assert cap("short text") == "short text"


@needs_espeak
def test_nothing_to_say_is_an_error(tmp_path):
    with pytest.raises(SpeechError, match="no text"):
        speak("  \n ", tmp_path)


def test_missing_espeak_is_one_line_that_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no espeak-ng on it
    with pytest.raises(SpeechError) as info:
        speak("Hello there.", tmp_path)
    message = str(info.value)
    assert "apt-get install espeak-ng" in message and "\n" not in message


@needs_espeak
def test_speech_round_trip_through_pocketsphinx(tmp_path):
    pytest.importorskip("pocketsphinx", reason="speech input needs pocketsphinx: pip install 'llmlab[ui]'")
    # PocketSphinx hears eSpeak's robotic voice poorly (see voice.py); these phrases it gets mostly right
    heard = transcribe(speak("one two three four five", tmp_path)).split()
    assert len({"two", "three", "four", "five"} & set(heard)) >= 3, heard
    heard = transcribe(speak("red green blue", tmp_path)).split()
    assert {"green", "blue"} <= set(heard) and "three" not in heard, heard


def test_speech_input_refuses_what_is_not_a_wav_file(tmp_path):
    pytest.importorskip("pocketsphinx", reason="speech input needs pocketsphinx: pip install 'llmlab[ui]'")
    bad = tmp_path / "reply.wav"
    bad.write_bytes(b"ID3 this is an mp3, not a wav")
    with pytest.raises(SpeechError, match="not a WAV file"):
        transcribe(bad)
    with pytest.raises(SpeechError, match="no audio file"):
        transcribe(tmp_path / "missing.wav")
