#!/usr/bin/env python3
"""Voice-to-voice latency, part by part, on real SIP calls.

The release server (dialer.carrier = "sip", agent.kind = "llm") calls baresip on
loopback, which answers and speaks: a WAV of speech-like bursts with quiet between. The
recogniser, the language model and the speech server are stubs with known delays, all
OpenAI-compatible (asr.engine = "openai", a streamed chat completion, tts.engine =
"openai"). Every setting that bears on latency is the project's default. When the calls have ended, the
parts of `callcenter_turn_latency_seconds` on /metrics give each part's mean; the
server's own overhead per turn is the total less the turn-ending quiet and the stubs'
delays.

    bench/turn_latency.py                      # 4 calls, ASR 150 ms, model 300 ms, TTS 100 ms
    bench/turn_latency.py --calls 8 --asr-ms 0 --llm-ms 0 --tts-ms 0
    bench/turn_latency.py --tts-rate 8000      # a speech server that answers at 8 kHz
    bench/turn_latency.py --bin /tmp/callcenter-old   # an older build, for before/after
"""

import argparse
import http.server
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARTS = ["end_of_turn", "recognition", "agent", "synthesis", "sending", "total"]
# The stub voice's pace, as a person speaks Chinese; the longest line it voices.
SECS_PER_CHAR = 0.2
MAX_CHARS = 40
# The agent's answers: at most this many characters.
REPLY_CHARS = 12


def log(msg):
    print(time.strftime("[%H:%M:%S] ") + msg, file=sys.stderr, flush=True)


def tone(secs, rate, pitch=180.0, amp=8000):
    """A voiced sound with a syllable rhythm, loud in every 20 ms frame (the callee's
    voice detection counts any frame above its threshold as speech)."""
    n = int(secs * rate)
    out = bytearray()
    for i in range(n):
        t = i / rate
        envelope = 0.6 + 0.4 * math.sin(2 * math.pi * 4 * t)
        v = sum(math.sin(2 * math.pi * pitch * k * t) / k for k in (1, 2, 3))
        out += int(max(-32767, min(32767, amp * envelope * v / 1.8))).to_bytes(2, "little", signed=True)
    return bytes(out)


def wav_bytes(pcm, rate):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


class Stubs(http.server.ThreadingHTTPServer):
    """The three engines on one port, each answering after its known delay."""

    daemon_threads = True

    def __init__(self, asr_s, llm_s, tts_s, tts_rate):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.delays = {"asr": asr_s, "llm": llm_s, "tts": tts_s}
        # Made once: a line's audio is cut from it, so the stub's own time is nil.
        self.rate = tts_rate
        self.voice = tone(MAX_CHARS * SECS_PER_CHAR, tts_rate, pitch=120.0)
        self.replies = 0
        self.lock = threading.Lock()

    def speech(self, text, response_format):
        """Audio as long as a voice would take to say `text`: raw 16-bit PCM (OpenAI's
        "pcm", its rate in the Content-Type as some servers give it) or a WAV."""
        samples = int(min(len(text), MAX_CHARS) * SECS_PER_CHAR * self.rate)
        pcm = self.voice[: 2 * samples]
        if response_format == "pcm":
            return f"audio/pcm;rate={self.rate}", pcm
        return "audio/wav", wav_bytes(pcm, self.rate)

    def reply_no(self):
        # A new line each time: a line said before comes from the TTS cache, unsynthesised.
        with self.lock:
            self.replies += 1
            return self.replies


class StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections kept alive, as real servers do

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Each answer goes out as written: Nagle's wait would be the stub's, not the server's.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        body = self.body()
        if self.path.endswith("/audio/transcriptions"):
            time.sleep(self.server.delays["asr"])
            self.answer("application/json", json.dumps({"text": "好的，我知道了。"}).encode())
        elif self.path.endswith("/audio/speech"):
            time.sleep(self.server.delays["tts"])
            request = json.loads(body)
            self.answer(*self.server.speech(request["input"], request.get("response_format", "wav")))
        elif self.path.endswith("/chat/completions"):
            self.chat(json.loads(body))
        else:
            self.answer("text/plain", b"not here", 404)

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            data += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return data

    def answer(self, kind, data, status=200):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chat(self, request):
        """One sentence after the model's delay, streamed (or whole, if not asked to stream)."""
        time.sleep(self.server.delays["llm"])
        line = f"好的，这是第{self.server.reply_no()}次回答。"
        if not request.get("stream"):
            message = {"role": "assistant", "content": line}
            self.answer("application/json", json.dumps({"choices": [{"index": 0, "message": message}]}).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for delta, finish in [({"role": "assistant", "content": line}, None), ({}, "stop")]:
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.event(json.dumps(chunk, ensure_ascii=False))
        self.event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def event(self, data):
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()


def free_port():
    """A port free for both UDP and TCP on loopback (baresip takes SIP on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


def start_baresip(workdir, numbers, voice):
    conf = os.path.join(workdir, ".baresip")
    os.makedirs(conf, exist_ok=True)
    port = free_port()
    with open(os.path.join(conf, "config"), "w") as f:
        f.write(
            f"poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n"
            "call_local_timeout 120\ncall_max_calls 64\naudio_player aubridge,nowhere\n"
            f"audio_alert aubridge,nowhere\naudio_source aufile,{voice}\nrtp_ports 30000-39999\n"
            "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n"
            "module aubridge.so\nmodule_app account.so\nmodule_app menu.so\n"
        )
    with open(os.path.join(conf, "accounts"), "w") as f:
        for n in numbers:
            f.write(f"<sip:{n}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMA,PCMU\n")
    out = open(os.path.join(workdir, "baresip.log"), "w")
    proc = subprocess.Popen(
        ["baresip", "-f", conf], env={**os.environ, "HOME": workdir}, stdin=subprocess.DEVNULL, stdout=out, stderr=out
    )
    wait_for(lambda: "baresip is ready" in read(os.path.join(workdir, "baresip.log")), 20, "baresip to start", proc)
    return proc, port


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(check, secs, what, proc=None):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"error: waiting for {what}, the process exited with {proc.returncode}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"error: {what} did not happen within {secs} s")


def api(base, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        text = r.read().decode()
    return json.loads(text) if body is not None else text


def histograms(metrics):
    """(sum, count) of each part of callcenter_turn_latency_seconds."""
    out = {}
    for part in PARTS:
        got = {}
        for what in ("sum", "count"):
            m = re.search(rf'^callcenter_turn_latency_seconds_{what}{{part="{part}"}} (\S+)$', metrics, re.M)
            got[what] = float(m.group(1)) if m else 0.0
        out[part] = (got["sum"], got["count"])
    return out


def machine():
    cpus = os.cpu_count()
    model = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines() if l.startswith("model name")), "?")
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo")).group(1))
    return f"{cpus} vCPUs ({model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, Linux {os.uname().release}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=4, help="calls, placed at once (default 4)")
    p.add_argument("--asr-ms", type=float, default=150, help="the recogniser's delay")
    p.add_argument("--llm-ms", type=float, default=300, help="the model's delay to its first sentence")
    p.add_argument("--tts-ms", type=float, default=100, help="the speech server's delay")
    p.add_argument("--tts-rate", type=int, default=24000, help="the speech server's sample rate (OpenAI's: 24000)")
    p.add_argument("--bin", default="", help="the server binary (default: the release build)")
    p.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    a = p.parse_args()
    if not shutil.which("baresip"):
        sys.exit("error: baresip is not installed (apt-get install -y baresip)")
    binary = a.bin
    if not binary:
        if not a.no_build:
            log("cargo build --release")
            subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        binary = os.path.join(target, "release", "callcenter")
    delays = {"asr": a.asr_ms / 1000, "llm": a.llm_ms / 1000, "tts": a.tts_ms / 1000}

    workdir = tempfile.mkdtemp(prefix="turn-latency-")
    children = []
    try:
        # The callee: quiet, then speech, again and again, the quiet long enough for the
        # agent's answer to end before the callee speaks again (no barge-in).
        speech_s, vad_s = 1.2, 0.7
        quiet_s = max(2.5, vad_s + sum(delays.values()) + REPLY_CHARS * SECS_PER_CHAR + 1.0)
        cycle = b"\0\0" * int(quiet_s * 8000) + tone(speech_s, 8000)
        voice = os.path.join(workdir, "voice.wav")
        with open(voice, "wb") as f:
            f.write(wav_bytes(cycle * 40, 8000))
        numbers = [f"1390000{5000 + i}" for i in range(a.calls)]
        baresip, sip_port = start_baresip(workdir, numbers, voice)
        children.append(baresip)

        stubs = Stubs(**{f"{k}_s": v for k, v in delays.items()}, tts_rate=a.tts_rate)
        threading.Thread(target=stubs.serve_forever, daemon=True).start()
        stub_url = f"http://127.0.0.1:{stubs.server_address[1]}/v1"

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "CALLCENTER__SERVER__BIND": f"127.0.0.1:{port}",
            "CALLCENTER__DATABASE__URL": f"sqlite://{workdir}/callcenter.db",
            "CALLCENTER__RECORDINGS__DIR": f"{workdir}/recordings",
            "CALLCENTER__DIALER__CARRIER": "sip",
            "CALLCENTER__DIALER__MAX_ATTEMPTS": "1",
            "CALLCENTER__SIP__TRUNKS": f'[{{address = "127.0.0.1:{sip_port}"}}]',
            "CALLCENTER__SIP__BIND": "127.0.0.1:0",
            "CALLCENTER__ASR__ENGINE": "openai",
            "CALLCENTER__ASR__URL": stub_url,
            "CALLCENTER__TTS__ENGINE": "openai",
            "CALLCENTER__TTS__URL": stub_url,
            "CALLCENTER__AGENT__KIND": "llm",
            "CALLCENTER__AGENT__LLM__BASE_URL": stub_url,
        }
        server_log = open(os.path.join(workdir, "server.log"), "w")
        server = subprocess.Popen([binary, "serve"], cwd=workdir, env=env, stdout=server_log, stderr=server_log)
        children.append(server)
        wait_for(lambda: api(base, "/readyz"), 30, "the server to be ready", server)

        tickets = [
            {"ticketNo": f"LAT-{i}", "phone": n, "username": "张三", "ticketType": "维修通知",
             "ticketContent": "明天上午九点上门维修。"}
            for i, n in enumerate(numbers)
        ]
        created = api(base, "/api/aicall/createTasks", tickets)
        if created.get("code") != 0:
            sys.exit(f"error: createTasks: {created}")
        log(f"{a.calls} calls; delays: ASR {a.asr_ms:g} ms, model {a.llm_ms:g} ms, TTS {a.tts_ms:g} ms")
        started = time.monotonic()

        def ended():
            rows = api(base, "/api/aicall/calltask/list", {"pageNum": 1, "pageSize": 1000})["rows"]
            return rows if all(r["status"] not in ("待呼叫", "呼叫中", "等待重呼") for r in rows) else None

        rows = wait_for(ended, 600, "the calls to end", server)
        log(f"calls ended after {time.monotonic() - started:.0f} s: " + ", ".join(r["lastHangupCause"] or "-" for r in rows))
        parts = histograms(api(base, "/metrics"))
        turns = parts["total"][1]
        if turns == 0:
            sys.exit(f"error: no turn was answered; logs in {workdir}")
        mean = {k: s / c * 1000 if c else float("nan") for k, (s, c) in parts.items()}
        known = {"recognition": a.asr_ms, "agent": a.llm_ms, "synthesis": a.tts_ms}
        overhead = mean["total"] - mean["end_of_turn"] - sum(known.values())

        print(f"\nMachine: {machine()}")
        print(f"Calls: {a.calls}, answered turns: {turns:.0f}; stub delays: ASR {a.asr_ms:g} ms, "
              f"model {a.llm_ms:g} ms (first sentence), TTS {a.tts_ms:g} ms "
              f"(PCM at {a.tts_rate} Hz, streamed, {SECS_PER_CHAR:g} s a character)\n")
        print("| part | mean | of which the stub | the server's own |")
        print("| --- | --- | --- | --- |")
        for part in PARTS:
            if part == "end_of_turn":
                own = "(asr.vad_silence_ms, 700)"
            elif part == "total":
                own = f"**{overhead:.1f} ms**"
            else:
                own = f"{mean[part] - known.get(part, 0):.1f} ms"
            stub = f"{known[part]:g} ms" if part in known else ""
            print(f"| {part} | {mean[part]:.1f} ms | {stub} | {own} |")
        print(f"\nServer overhead per turn (total − end_of_turn − stub delays): {overhead:.1f} ms")
    finally:
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if a.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
