"""Robustness at the edges: a planted OpenAI key never leaks anywhere a run writes, a server that
never answers in time, and identities with a single image."""
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from test_keypoint_sources import GOOD, completion

KEY = "sk-planted-7f3a9c1e-NEVER-WRITE-ME"


class Answer(BaseHTTPRequestHandler):
    delay = 0.0
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(type(self).delay)
        raw = json.dumps(completion(GOOD)).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except OSError:  # the client gave up waiting
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    Answer.delay, Answer.calls = 0.0, 0
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_planted_key_appears_in_no_output_of_a_gpt4_run(server, tmp_path):
    cache, results = tmp_path / "cache", tmp_path / "results"
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server, "HARNESS_CACHE": str(cache),
           "OPENAI_LOG": "debug"}
    cmd = [sys.executable, "-m", "harness", "run", "--method", "ckpe", "--backbone", "nano", "--image-size", "32",
           "--epochs", "1", "--batch-size", "8", "--allow-small-test", "--dataset-option", "identities=6",
           "--dataset-option", "images_per_identity=4", "--dataset-option", "image_size=32",
           "--keypoints", "gpt4@sift:k=3,size=32,step=4", "--results-dir", str(results)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Answer.calls == 1  # the reference was asked for once
    rec = json.loads(next(results.glob("*.json")).read_text())
    assert "gpt4" in json.dumps(rec["keypoints"]["provenance"])
    written = [p for p in list(cache.rglob("*")) + list(results.rglob("*")) if p.is_file()]
    assert written
    for text in [out.stdout, out.stderr] + [p.read_bytes().decode("latin-1") for p in written]:
        assert KEY not in text
        assert KEY[-12:] not in text  # not even a tail of it


def test_a_server_that_never_answers_in_time(server, tmp_path, monkeypatch):
    from harness.core.errors import DataError
    from harness.data.loaders import get_card, load_dataset
    from harness.keypoints.references import REFERENCE_SOURCES, AnnotateOptions

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    Answer.delay = 2.0
    data = load_dataset(get_card("synthetic"), {"identities": "4", "images_per_identity": "3", "image_size": "32"})
    opts = AnnotateOptions(num_keypoints=3, base_url=server, max_retries=1, timeout=0.3)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"OpenAI API timed out \(0.3 s per request, 1 retries\)") as err:
        REFERENCE_SOURCES.create("gpt4").annotate(data, get_card("synthetic"), opts)
    assert time.perf_counter() - t0 < 15
    assert KEY not in str(err.value)
    assert Answer.calls == 2  # the first try and one retry


def _folder(root: Path, counts: dict):
    for ident, n in counts.items():
        (root / ident).mkdir(parents=True)
        for j in range(n):
            Image.new("RGB", (24, 24), (40 * j % 255, 10, 10)).save(root / ident / f"{j}.jpg")


def test_single_image_identities_are_counted_not_scored(cli, tmp_path):
    counts = {f"id{i}": 4 for i in range(8)} | {f"solo{i}": 1 for i in range(12)}
    _folder(tmp_path / "imgs", counts)
    res = cli("run", "--method", "vit", "--dataset", f"folder:{tmp_path / 'imgs'}", "--allow-small-test", "--backbone", "nano",
              "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--quiet", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    m = rec["metrics"]
    test_ids = rec["split"]["test_identities"]
    assert m["queries"] + m["unanswerable_queries"] == rec["split"]["test_images"]
    assert m["unanswerable_queries"] > 0 and "have no other image of their identity" in res.output
    assert test_ids == 4


def test_only_single_image_test_identities_is_a_clear_error(cli, tmp_path):
    _folder(tmp_path / "imgs", {f"solo{i}": 1 for i in range(10)})
    res = cli("run", "--method", "vit", "--dataset", f"folder:{tmp_path / 'imgs'}", "--backbone", "nano",
              "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--quiet", "--results-dir", tmp_path / "r")
    assert res.exit_code != 0 and "no test identity has 2 or more images" in res.output
    assert "Traceback" not in res.output and not list((tmp_path / "r").glob("*.json"))
