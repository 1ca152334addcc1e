"""An unknown or retired GPT model ends in one line naming --model (against a local
OpenAI-compatible server); the DIFT/sd featurizers' TF32 switch is off by default, scoped to the
featurizer's own passes and recorded in its config only when on."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from harness.core.errors import DataError
from harness.data.loaders import get_card, load_dataset
from harness.keypoints.featurizers import create_featurizer
from harness.keypoints.recipes import parse_recipe
from harness.keypoints.references import REFERENCE_SOURCES, AnnotateOptions


class Refuse(BaseHTTPRequestHandler):
    """Answers every request with ``reply`` = (status, JSON body)."""

    reply: tuple = (404, {})
    calls = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        status, body = self.reply
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def annotate(server, monkeypatch, reply, model):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    Refuse.reply, Refuse.calls = reply, 0
    data = load_dataset(get_card("synthetic"), {"identities": "3", "images_per_identity": "2", "image_size": "32"})
    opts = AnnotateOptions(num_keypoints=3, model=model, base_url=server, max_retries=0, timeout=5)
    return REFERENCE_SOURCES.create("gpt4").annotate(data, get_card("synthetic"), opts)


NOT_FOUND = (404, {"error": {"message": "The model `gpt-9-vision` does not exist or you do not have access to it.",
                             "type": "invalid_request_error", "param": None, "code": "model_not_found"}})
RETIRED = (400, {"error": {"message": "The model `gpt-4-vision-preview` has been deprecated.",
                           "type": "invalid_request_error", "param": "model", "code": None}})


@pytest.mark.parametrize("reply, model", [(NOT_FOUND, "gpt-9-vision"), (RETIRED, "gpt-4-vision-preview")])
def test_unknown_or_retired_model_is_one_line_naming_model(server, monkeypatch, reply, model):
    with pytest.raises(DataError) as info:
        annotate(server, monkeypatch, reply, model)
    message = str(info.value)
    assert "\n" not in message and Refuse.calls == 1  # not retried
    assert message.startswith(f"the OpenAI API cannot run model {model!r}")
    assert "pass another vision model with --model" in message and "ref_model=NAME" in message


def test_a_404_that_is_not_about_the_model_stays_a_plain_api_error(server, monkeypatch):
    with pytest.raises(DataError, match="OpenAI API error 404") as info:
        annotate(server, monkeypatch, (404, {"error": {"message": "Not Found"}}), "gpt-4o")
    assert "--model" not in str(info.value)


def test_tf32_is_off_by_default_recorded_only_when_on_and_checked():
    dift = create_featurizer("dift")
    assert not dift.tf32 and "tf32" not in dift.config()  # sets computed before the switch keep their names
    recipe = parse_recipe("expert@dift:tf32=1")
    on = create_featurizer(recipe.featurizer, **recipe.options)
    assert on.config()["tf32"] is True and on.config()["dtype"] == "fp32"
    assert create_featurizer("sd", tf32=1).config()["tf32"] is True
    with pytest.raises(ValueError, match="tf32 must be 0 or 1"):
        create_featurizer("dift", tf32=2)


def test_tf32_switch_is_scoped_to_the_featurizer_on_cuda(monkeypatch):
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # a process that allowed TF32 for its own training
        dift, on = create_featurizer("dift"), create_featurizer("dift", tf32=1)
        for f in (dift, on):
            f.device = torch.device("cuda")  # the switch only applies on CUDA; no GPU needed to set it
        with dift._precision():
            assert torch.get_float32_matmul_precision() == "highest"  # DIFT's full fp32
        with on._precision():
            assert torch.get_float32_matmul_precision() == "high"
        assert torch.get_float32_matmul_precision() == "high"  # restored
        cpu = create_featurizer("dift")
        with cpu._precision():
            assert torch.get_float32_matmul_precision() == "high"  # a CPU run leaves it alone
    finally:
        torch.set_float32_matmul_precision(before)
