"""Reference sources (gpt4 against a local OpenAI-compatible server, expert, Grad-CAM, ground
truth), stored keypoint sets and their validation, and the `harness keypoints` commands."""
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from harness.core.errors import DataError
from harness.data.loaders import get_card, load_dataset
from harness.keypoints.sources import resolve_keypoints
from harness.keypoints.store import reference_to_json
from harness.keypoints.store import load_keypoint_set, save_keypoint_set, store_dir
from harness.keypoints.references import REFERENCE_SOURCES, AnnotateOptions
from harness.keypoints.references.gpt4 import parse_gpt_reply

OPTS = {"identities": "4", "images_per_identity": "3", "image_size": "32"}
SECRET = "sk-test-DO-NOT-LEAK-123"


@pytest.fixture(scope="module")
def data():
    return load_dataset(get_card("synthetic"), OPTS)


# ---------------------------------------------------------------- a replaying OpenAI-compatible server


def completion(content=None, refusal=None):
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "gpt-test",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}]}


GOOD = json.dumps({"keypoints": [{"name": "Left Eye", "x": 10, "y": 8}, {"name": "right eye", "x": 20, "y": 8},
                                 {"name": "nose", "x": 15, "y": 16}]})


class Replay(BaseHTTPRequestHandler):
    script: list = []  # (status, json body); the last entry repeats forever
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        status, payload = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if status >= 400:
            self.send_header("retry-after-ms", "1")  # keep the client's backoff short in tests
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def ask(server, data, script, monkeypatch, **kw):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    Replay.script, Replay.seen = list(script), []
    opts = AnnotateOptions(num_keypoints=3, base_url=server, max_retries=kw.pop("max_retries", 2), timeout=5, **kw)
    return REFERENCE_SOURCES.create("gpt4").annotate(data, get_card("synthetic"), opts)


def test_gpt4_success_uses_structured_output_and_keeps_the_key_out(server, data, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    ref = ask(server, data, [(200, completion(GOOD))], monkeypatch, model="gpt-4o-mini")
    assert ref.categories == ("left_eye", "right_eye", "nose")
    assert ref.flip_pairs == (("left_eye", "right_eye"),)
    np.testing.assert_allclose(ref.points, [[10, 8], [20, 8], [15, 16]])
    (req,) = Replay.seen
    assert req["path"].endswith("/chat/completions") and req["body"]["model"] == "gpt-4o-mini"
    fmt = req["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["keypoints"]["minItems"] == 3
    parts = req["body"]["messages"][0]["content"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert req["auth"] == f"Bearer {SECRET}"  # sent to the server, and nowhere else:
    assert SECRET not in json.dumps(reference_to_json(ref, data, "r")) and SECRET not in caplog.text
    assert ref.provenance["source"] == "gpt4" and ref.provenance["model"] == "gpt-4o-mini"


def test_gpt4_retries_429_then_succeeds(server, data, monkeypatch):
    ref = ask(server, data, [(429, {"error": {"message": "slow down"}}), (200, completion(GOOD))], monkeypatch)
    assert len(Replay.seen) == 2 and len(ref.categories) == 3


def test_gpt4_500_forever_gives_a_clear_error_after_the_retries(server, data, monkeypatch):
    with pytest.raises(DataError, match="OpenAI API error 500 after 2 retries"):
        ask(server, data, [(500, {"error": {"message": "boom"}})], monkeypatch)
    assert len(Replay.seen) == 3


@pytest.mark.parametrize("reply, message", [
    (completion("{not json"), "not valid JSON"),
    (completion(None, refusal="I can't help with that."), "the model refused: I can't help with that."),
    (completion(json.dumps({"keypoints": [{"name": "eye", "x": 1, "y": 1}]})), "has 1 keypoints, 3 were asked for"),
])
def test_gpt4_malformed_or_refused_replies(server, data, monkeypatch, reply, message):
    with pytest.raises(DataError, match=message):
        ask(server, data, [(200, reply)], monkeypatch)


def test_gpt4_without_key_fails_before_any_request(server, data, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    Replay.seen = []
    with pytest.raises(DataError, match="OPENAI_API_KEY is not set"):
        REFERENCE_SOURCES.create("gpt4").annotate(data, get_card("synthetic"), AnnotateOptions(base_url=server))
    assert Replay.seen == []


def test_gpt4_reply_validation():
    pts = lambda *p: json.dumps({"keypoints": [{"name": n, "x": x, "y": y} for n, x, y in p]})  # noqa: E731
    with pytest.raises(DataError, match="not distinct"):
        parse_gpt_reply(pts(("eye", 1, 1), ("Eye", 2, 2)), 2, 32, 32)
    with pytest.raises(DataError, match=r"outside the 32x32 image"):
        parse_gpt_reply(pts(("eye", 1, 1), ("nose", 40, 2)), 2, 32, 32)
    names, p = parse_gpt_reply(pts(("eye", 1, 1), ("nose", 3, 2)), 2, 32, 32)
    assert names == ("eye", "nose") and p.shape == (2, 2)


# ---------------------------------------------------------------- expert and Grad-CAM


def write_expert(path, data, image_id=0, **changes):
    rows = data.df.index[data.df["image_id"] == image_id]
    row = int(rows[0]) if len(rows) else 0
    raw = {"dataset": data.name, "image": {"image_id": image_id, "width": 32, "height": 32},
           "categories": list(data.categories), "flip_pairs": [list(p) for p in data.flip_pairs],
           "keypoints": {c: [float(x), float(y)] for c, (x, y) in zip(data.categories, data.keypoints[row])}}
    raw.update(changes)
    path.write_text(json.dumps(raw))
    return path


def test_expert_reference_file_and_its_errors(tmp_path, data):
    card = get_card("synthetic")
    ref = REFERENCE_SOURCES.create("expert").annotate(data, card, AnnotateOptions(reference_file=write_expert(tmp_path / "e.json", data)))
    assert ref.categories == data.categories and ref.image_id == "0"
    np.testing.assert_allclose(ref.points, data.keypoints[0])
    with pytest.raises(DataError, match="ships no expert reference"):
        REFERENCE_SOURCES.create("expert").annotate(data, card, AnnotateOptions())
    bad = write_expert(tmp_path / "b.json", data, image_id=9999)
    with pytest.raises(DataError, match="image id 9999 is not in dataset synthetic"):
        REFERENCE_SOURCES.create("expert").annotate(data, card, AnnotateOptions(reference_file=bad))
    bad = write_expert(tmp_path / "c.json", data, keypoints={"left_eye": [1, 1], "tail": [2, 2]})
    with pytest.raises(DataError, match=r"keypoint\(s\) \['tail'\] are not in categories"):
        REFERENCE_SOURCES.create("expert").annotate(data, card, AnnotateOptions(reference_file=bad))
    bad = write_expert(tmp_path / "d.json", data, categories=["left_eye"], flip_pairs=[], keypoints={"left_eye": [50, 1]})
    with pytest.raises(DataError, match=r"left_eye at \(50, 1\) is outside the 32x32 image"):
        REFERENCE_SOURCES.create("expert").annotate(data, card, AnnotateOptions(reference_file=bad))


def test_shared_macaque_reference_file_reads():
    from pathlib import Path

    from harness.keypoints.store import read_reference

    path = Path("/work/shared/reference-keypoints/MacaqueFaces.json")
    if not path.exists():
        pytest.skip("shared MacaqueFaces reference not present")
    ref = read_reference(path)
    assert ref.image_id == "20" and ref.categories == ("right_eye", "left_eye", "nose", "mouth_centre")
    assert ref.flip_pairs == (("right_eye", "left_eye"),) and ref.points[0].tolist() == [31, 24]


@pytest.mark.parametrize("source, arch", [("gradcam-resnet", "test_resnet"), ("gradcam-vit", "test_vit")])
def test_gradcam_with_a_tiny_local_classifier(tmp_path, data, source, arch):
    import timm
    from timm.models import save_for_hf

    save_for_hf(timm.create_model(arch, num_classes=4), str(tmp_path / arch), model_args={"num_classes": 4})
    opts = AnnotateOptions(num_keypoints=3, model=str(tmp_path / arch), device="cpu", image="2")
    ref = REFERENCE_SOURCES.create(source).annotate(data, get_card("synthetic"), opts)
    assert ref.categories == ("gradcam_1", "gradcam_2", "gradcam_3") and ref.image_id == "2"
    assert ref.points.shape == (3, 2) and (ref.points >= 0).all() and (ref.points <= 32).all()
    assert len({tuple(p) for p in ref.points.round(3)}) == 3
    assert ref.provenance["source"] == source and ref.provenance["library"] == "pytorch-grad-cam"


def test_cam_peaks_are_local_maxima_in_order():
    from harness.keypoints.references.gradcam import cam_peaks

    cam = np.zeros((32, 32))
    cam[5, 6], cam[20, 25], cam[6, 7] = 1.0, 0.8, 0.9  # (6, 7) is next to the top peak: suppressed
    peaks = cam_peaks(cam, 2, min_distance=3)
    assert peaks.tolist() == [[6.5, 5.5], [25.5, 20.5]]


# ---------------------------------------------------------------- stored keypoint sets


def test_stored_set_round_trip_validation_and_run_resolution(data):
    from harness.config import RunConfig
    from harness.keypoints.sets import KeypointSet

    kps = KeypointSet(data.categories, data.flip_pairs, data.keypoints.copy(), {"source": "test", "featurizer": {"x": 1}})
    path = save_keypoint_set(kps, data, "roundtrip")
    cfg = RunConfig(dataset_options=tuple(OPTS.items()), num_keypoints=2)
    got = resolve_keypoints("roundtrip", data, cfg)
    assert got.categories == data.categories[:2]
    np.testing.assert_allclose(got.points, data.keypoints[:, :2], atol=0.01)
    assert got.provenance["featurizer"] == {"x": 1} and got.provenance["keypoint_set"] == "roundtrip"
    raw = json.loads(path.read_text())

    def broken(name, edit):
        bad = json.loads(json.dumps(raw))
        edit(bad)
        (store_dir(data) / f"{name}.json").write_text(json.dumps(bad))
        return store_dir(data) / f"{name}.json"

    cases = [
        (lambda r: r["points"].update({"777": {}}), r"image id\(s\) not in dataset synthetic, e.g. \['777'\]"),
        (lambda r: r["points"].pop("3"), r"no entry for 1 image\(s\)"),
        (lambda r: r["points"]["0"].update(tail=[1, 1]), "category 'tail' is not one of"),
        (lambda r: r["points"]["0"].update(nose=[1, 99]), r"point \(1, 99\) is outside the 32x32 image"),
        (lambda r: r["points"]["0"].update(nose="here"), "a point must be"),
        (lambda r: r.update(dataset_fingerprint="0000"), "another version of dataset synthetic"),
        (lambda r: r.update(format="other"), "not a 'harness-keypoints' version 1 file"),
        (lambda r: r["points"]["0"].update(nose=[float("nan"), 1]), r"point \[nan, 1\] is not finite"),
    ]
    for i, (edit, message) in enumerate(cases):
        with pytest.raises(DataError, match=message):
            load_keypoint_set(broken(f"bad{i}", edit), data)
    (store_dir(data) / "notjson.json").write_text("{ this is not json")
    with pytest.raises(DataError, match="notjson.json"):
        load_keypoint_set(store_dir(data) / "notjson.json", data)
    from harness.core.errors import RegistryError

    with pytest.raises(RegistryError, match="unknown keypoint source 'nope'.*roundtrip"):
        resolve_keypoints("nope", data, cfg)


def test_a_recipe_asks_the_store_once_and_takes_the_card_it_is_given(tmp_path, monkeypatch):
    """Resolving a recipe runs one way down: the store is asked once whether it holds the
    reference (computed or cached), and the card comes from the caller, never looked up again."""
    from harness.config import RunConfig
    from harness.data.cards import DATASETS
    from harness.keypoints import recipes, store

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    card = get_card("synthetic")
    data = load_dataset(card, OPTS)
    asked, lookup = [], store.stored_path

    def counted(name, where):
        asked.append(name)
        return lookup(name, where)

    def no_card_lookup(*args, **kwargs):
        raise AssertionError("the card was looked up again")

    for module in (recipes, store):
        monkeypatch.setattr(module, "stored_path", counted)
    monkeypatch.setattr(DATASETS, "create", no_card_lookup)
    cfg = RunConfig(dataset="synthetic", dataset_options=tuple(OPTS.items()), num_keypoints=3)
    for computed in (True, False):
        asked.clear()
        kps = resolve_keypoints("ground-truth@sift:size=32,step=4", data, cfg, progress=False, card=card)
        assert len(asked) == 1 and asked[0].startswith("ref-ground-truth-"), (computed, asked)
        assert kps.points.shape == (len(data.df), 3, 2)


def test_annotate_cli_takes_the_offline_tiny_classifier_by_name(cli, tmp_path, monkeypatch):
    """`--model tiny-random-vit` works for `keypoints annotate` too, not only inside recipes: the
    name is resolved where Grad-CAM loads its classifier."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    res = cli("keypoints", "annotate", "--dataset", "synthetic", "--dataset-option", "identities=4",
              "--dataset-option", "images_per_identity=2", "--dataset-option", "image_size=32",
              "--source", "gradcam-vit", "--model", "tiny-random-vit", "--num-keypoints", "2", "--device", "cpu")
    assert res.exit_code == 0, res.output
    stored = json.loads(next((tmp_path / "cache" / "keypoints").rglob("ref-gradcam-vit-*.json")).read_text())
    assert list(stored["keypoints"]) == ["gradcam_1", "gradcam_2"]
    assert stored["provenance"]["model"] == "tiny-random-vit"
