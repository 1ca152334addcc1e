"""The page of `harness keypoints annotate` (no --source): served over HTTP, refusing bad saves with a
message, writing a reference that propagation reads; clicked in a real headless Chromium; and the
whole route on a folder of one's own images: annotate -> propagate -> `harness run --method ckpe`."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser import browser, wait_for  # noqa: F401  (browser: the fixture)
from harness.cli.keypoints import MarkRequest, _load, mark_page
from harness.cli.mark_page import MarkServer
from harness.core.errors import DataError
from harness.keypoints.references.marked import names_to_mark
from harness.keypoints.store import read_reference

REPO = Path(__file__).resolve().parents[1]
NAMES = ("left_eye", "right_eye", "mouth")


def make_folder(root: Path, identities: int = 4, images: int = 4) -> Path:
    """identities x images PNGs (80 x 64): a face-like disc whose colour is the identity, jittered."""
    rng = np.random.default_rng(0)
    for i in range(identities):
        for j in range(images):
            im = Image.new("RGB", (80, 64), tuple(int(v) for v in rng.integers(0, 80, 3)))
            draw = ImageDraw.Draw(im)
            cx, cy = 40 + int(rng.integers(-6, 7)), 32 + int(rng.integers(-5, 6))
            draw.ellipse([cx - 20, cy - 20, cx + 20, cy + 20], fill=(60 + 30 * i, 200 - 25 * i, 120))
            draw.ellipse([cx - 10, cy - 8, cx - 5, cy - 3], fill=(0, 0, 0))
            draw.ellipse([cx + 5, cy - 8, cx + 10, cy - 3], fill=(0, 0, 0))
            (root / f"id{i}").mkdir(parents=True, exist_ok=True)
            im.save(root / f"id{i}" / f"{j}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return f"folder:{make_folder(tmp_path / 'animals')}"


def serve(dataset: str, names: str | None = ",".join(NAMES), **asked) -> MarkServer:
    """The page's server on a free port, serving in a thread until a save succeeds."""
    request = MarkRequest(names, asked.get("image"), None, asked.get("name"), asked.get("force", False))
    server = MarkServer(mark_page(dataset, (), _load(dataset, (), None), request))
    threading.Thread(target=server.serve_until_saved, daemon=True).start()
    return server


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_page_and_image_are_served_from_localhost_without_internet_files(folder):
    server = serve(folder)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.server_address[0] == "127.0.0.1"
        status, html, kind = get(server.url)
        assert status == 200 and kind.startswith("text/html")
        text = html.decode()
        config = json.loads(text.split("const CONFIG = ", 1)[1].split(";", 1)[0])
        assert config == {"dataset": folder, "image_id": "id0/0.png", "names": list(NAMES), "width": 80, "height": 64}
        assert "http://" not in text and "https://" not in text and "<link" not in text and " src=" not in text
        status, png, kind = get(server.url + "image.png")
        assert status == 200 and kind == "image/png"
        assert Image.open(io.BytesIO(png)).size == (80, 64)
        status, body, _ = get(server.url + "nothing-here")
        assert status == 404 and "open /" in json.loads(body)["error"]
    finally:
        server.shutdown()


@pytest.mark.parametrize("body, message", [
    (b"not json", "the body is not JSON"),
    (b"[1, 2]", 'the body must be {"points"'),
    (json.dumps({"points": {"left_eye": [10, 10]}}).encode(), "no point for right_eye, mouth"),
    (json.dumps({"points": {"left_eye": [1, 1], "right_eye": [2, 2], "mouth": [3, 3], "tail": [4, 4]}}).encode(),
     "unknown point name(s) tail"),
    (json.dumps({"points": {"left_eye": [1, 1], "right_eye": [2, 2], "mouth": [90, 3]}}).encode(),
     "mouth at (90, 3) is outside the 80x64 image"),
    (json.dumps({"points": {"left_eye": [1, 1], "right_eye": "here", "mouth": [3, 3]}}).encode(),
     "point right_eye: expected [x, y] finite numbers"),
    (json.dumps({"points": [1, 2]}).encode(), "'points' must map each name to [x, y]"),
])
def test_bad_saves_are_refused_with_a_message_and_write_nothing(folder, body, message):
    server = serve(folder)
    try:
        status, answer = post(server.url + "save", body)
        assert status == 400 and message in answer["error"], answer
        assert server.result is None
        status, answer = post(server.url + "elsewhere", b"{}")
        assert status == 404 and "/save" in answer["error"]
    finally:
        server.shutdown()


def test_a_save_writes_a_reference_that_propagation_reads(folder):
    server = serve(folder, image="id1/2.png")
    points = {"left_eye": [32.5, 24.25], "right_eye": [47, 25], "mouth": [40, 39.5]}
    status, answer = post(server.url + "save", json.dumps({"points": points}).encode())
    assert status == 200, answer
    assert answer["name"].startswith("ref-marked-")
    assert answer["next"] == (f"harness keypoints propagate --dataset {folder} --reference {answer['name']} "
                              "--featurizer sift")
    raw = json.loads(Path(answer["path"]).read_text())
    assert raw["format"] == "harness-reference" and raw["image"]["image_id"] == "id1/2.png"
    assert raw["keypoints"] == points and raw["flip_pairs"] == [["left_eye", "right_eye"]]
    _, data = _load(folder, (), None)
    ref = read_reference(Path(answer["path"]), data)
    assert ref.categories == NAMES and np.allclose(ref.points, [points[n] for n in NAMES])


def test_names_come_from_the_card_or_are_asked_for(folder):
    card, data = _load("synthetic", ("identities=4", "images_per_identity=2", "image_size=32"), None)
    cats, pairs = names_to_mark(data, card, None, 2)
    assert cats == tuple(data.categories[:2]) and all(a in cats and b in cats for a, b in pairs)
    card, data = _load(folder, (), None)
    with pytest.raises(DataError, match="has no keypoint categories; name the points to mark with --names"):
        names_to_mark(data, card, None, None)
    with pytest.raises(DataError, match="a name is given twice"):
        names_to_mark(data, card, "nose,nose", None)


def test_annotate_refuses_what_it_cannot_serve(cli, folder):
    out = cli("keypoints", "annotate", "--dataset", folder)
    assert out.exit_code != 0 and "--names" in out.output and "Traceback" not in out.output
    out = cli("keypoints", "annotate", "--dataset", folder, "--source", "ground-truth", "--names", "a,b")
    assert out.exit_code != 0 and "--names is for the page (no --source)" in out.output
    out = cli("keypoints", "annotate", "--dataset", folder, "--names", "a", "--image", "id9/0.png")
    assert out.exit_code != 0 and "image id id9/0.png is not in dataset" in out.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli("keypoints", "annotate", "--dataset", folder, "--names", "a", "--port", port)
    assert out.exit_code != 0 and f"cannot serve on 127.0.0.1:{port}" in out.output and "--port" in out.output


def test_a_stored_name_is_not_replaced_without_force(folder):
    server = serve(folder, name="mine")
    status, _ = post(server.url + "save", json.dumps({"points": {n: [5, 5] for n in NAMES}}).encode())
    assert status == 200
    with pytest.raises(DataError, match="a reference mine is stored already"):
        serve(folder, name="mine")
    again = serve(folder, name="mine", force=True)
    status, answer = post(again.url + "save", json.dumps({"points": {n: [6, 6] for n in NAMES}}).encode())
    assert status == 200 and json.loads(Path(answer["path"]).read_text())["keypoints"]["mouth"] == [6, 6]


def annotate_in_a_subprocess(folder: str, cache: str) -> subprocess.Popen:
    env = {**os.environ, "HARNESS_CACHE": cache, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "harness", "keypoints", "annotate", "--dataset", folder,
                             "--names", ",".join(NAMES)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_annotate_then_propagate_then_run_ckpe_on_ones_own_folder(cli, folder, tmp_path):
    proc = annotate_in_a_subprocess(folder, os.environ["HARNESS_CACHE"])
    try:
        url = proc.stdout.readline().strip()  # the first line: the URL, also for SSH port forwarding
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        status, answer = post(url + "save", json.dumps(
            {"points": {"left_eye": [32, 25], "right_eye": [47, 25], "mouth": [40, 40]}}).encode())
        assert status == 200, answer
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"next: {answer['next']}" in out and "ssh -L" in err
    command = answer["next"].split()[1:]  # harness keypoints propagate ...
    res = cli(*command, "--quiet")
    assert res.exit_code == 0, res.output
    kps_name = res.output.strip().splitlines()[-1].split(" | ")[0]
    res = cli("run", "--method", "ckpe", "--dataset", folder, "--keypoints", kps_name, "--backbone", "nano",
              "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--folds", "2", "--fold", "0",
              "--results-dir", tmp_path / "results", "--quiet")
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "results").glob("ckpe_*.json")
    record = json.loads(path.read_text())
    assert record["keypoints"]["categories"] == list(NAMES)
    assert record["keypoints"]["provenance"]["reference"]["source"] == "marked"


def test_the_page_in_a_real_browser_click_undo_click_save(browser, folder):
    server = serve(folder)
    browser.get(server.url)
    wait_for(browser, "return document.body.dataset.ready === '1'")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "canvas")
    width, height = canvas.size["width"], canvas.size["height"]
    scale = width / 80
    assert abs(height / scale - 64) < 1

    def click(x, y):  # image pixels -> an offset from the canvas's centre (selenium 4)
        ActionChains(browser).move_to_element_with_offset(canvas, int(x * scale - width / 2),
                                                          int(y * scale - height / 2)).click().perform()

    click(30, 25)
    click(60, 10)  # a wrong right eye, undone below
    assert "right_eye" in browser.find_element(By.ID, "names").text
    browser.find_element(By.ID, "undo").click()
    assert browser.execute_script("return points.length") == 1
    assert browser.find_element(By.ID, "save").get_attribute("disabled") is not None
    click(50, 25)
    click(40, 40)
    browser.find_element(By.ID, "save").click()
    next_line = wait_for(browser, "const n = document.getElementById('next'); return n && n.textContent")
    assert next_line.startswith(f"harness keypoints propagate --dataset {folder}")
    raw = json.loads(Path(server.result["path"]).read_text())
    got = [raw["keypoints"][n] for n in NAMES]
    assert np.allclose(got, [[30, 25], [50, 25], [40, 40]], atol=1.5 / scale + 0.01), got
    assert browser.find_element(By.ID, "undo").get_attribute("disabled") is not None
