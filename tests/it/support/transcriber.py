"""A real speech recogniser behind the OpenAI-compatible transcription protocol, for the
tests: POST /v1/audio/transcriptions (multipart: file, model, language, response_format)
answers {"text": ...} from pocketsphinx and its bundled US English model.

Usage: transcriber.py [PHRASE ...]. Given phrases, it recognises one of them (a grammar,
as an IVR does: pocketsphinx's open vocabulary is too weak on a synthetic voice for a
test to rely on); without, any English. The audio is resampled to the model's 16 kHz
(telephone audio is 8 kHz). Prints "listening on HOST:PORT" once it takes requests.
"""

import json
import random
import sys
import threading
import wave
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

from pocketsphinx import Decoder

MODEL_RATE = 16000
decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL")
decoding = threading.Lock()


def listen_for(phrases):
    """Restricts the decoder to one of `phrases`."""
    grammar = "#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = " + " | ".join(
        p.lower() for p in phrases
    ) + " ;\n"
    decoder.add_jsgf_string("phrases", grammar)
    decoder.activate_search("phrases")


def resample(pcm: bytes, rate: int) -> bytes:
    """16-bit mono PCM at `rate` to MODEL_RATE, by linear interpolation."""
    samples = memoryview(pcm).cast("h")
    if rate == MODEL_RATE or len(samples) < 2:
        return pcm
    n = len(samples) * MODEL_RATE // rate
    out = bytearray(2 * n)
    view = memoryview(out).cast("h")
    for i in range(n):
        x = i * rate / MODEL_RATE
        j = min(int(x), len(samples) - 2)
        f = x - j
        view[i] = int(samples[j] * (1 - f) + samples[j + 1] * f)
    return bytes(out)


def dither(pcm: bytes) -> bytes:
    """Adds line noise of a few steps: a stretch of digital silence (exact zeros, as an
    L16 stream or mu-law's 0xFF carries) otherwise spoils pocketsphinx's features, and it
    hears nothing at all (its own `dither` option does not cover this)."""
    noise = random.Random(0)
    samples = memoryview(bytearray(pcm)).cast("h")
    for i, s in enumerate(samples):
        samples[i] = max(-32768, min(32767, s + noise.randint(-8, 8)))
    return samples.tobytes()


def transcribe(wav_bytes: bytes) -> str:
    with wave.open(BytesIO(wav_bytes)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("expected 16-bit mono WAV")
        pcm = dither(resample(w.readframes(w.getnframes()), w.getframerate()))
    with decoding:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
    return hyp.hypstr if hyp else ""


def form_fields(content_type: str, body: bytes) -> dict:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server does

    def do_POST(self):
        if self.path.rstrip("/") != "/v1/audio/transcriptions":
            return self.answer(404, {"error": {"message": "not found"}})
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            fields = form_fields(self.headers.get("Content-Type", ""), body)
            text = transcribe(fields["file"])
        except Exception as e:  # the client is told, as a real server would
            return self.answer(400, {"error": {"message": str(e)}})
        self.answer(200, {"text": text})

    def answer(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if len(sys.argv) > 1:
        listen_for(sys.argv[1:])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()
