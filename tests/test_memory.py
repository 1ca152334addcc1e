"""Out of GPU memory, simulated on a CPU: a model whose forward raises torch.OutOfMemoryError on
micro-batches above a size. A fixed --accumulate that does not fit ends in one line naming the one
to try; --accumulate auto finds the fewest micro-batches that fit and trains exactly as that
fixed value does (the full batch's losses); ablate records the failed cell and goes on."""
from __future__ import annotations

import json

import pytest
import torch

from harness.engine.memory import OutOfMemory
from harness.engine.settings import TrainSettings
from harness.engine.train import Normalizer, Runtime, TrainData, embed, reid_loss, train
from harness.model.backbones import create_backbone
from harness.model.keypoint_vit import KeypointViT


def limited(model, most: int):
    """``model`` whose forward runs out of memory on batches of more than ``most`` images."""
    forward = model.forward

    def guarded(x, *args, **kwargs):
        if x.shape[0] > most:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: {x.shape[0]} > {most} images)")
        return forward(x, *args, **kwargs)

    model.forward = guarded
    return model


def fit(accumulate, most=None, epochs=2):
    torch.manual_seed(0)
    model = KeypointViT(create_backbone("nano", 32), "none", 0)
    if most is not None:
        model = limited(model, most)
    g = torch.Generator().manual_seed(1)
    data = TrainData(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.arange(40) % 5, None)
    losses = reid_loss(model.embed_dim, 5, 0.5, 16.0, 0.2)
    settings = TrainSettings(epochs=epochs, batch_size=16, lr=1e-3, weight_decay=0.05, warmup_epochs=0.0,
                             hflip=0.0, seed=0, accumulate=accumulate)
    return train(model, losses, data, Normalizer((0.5,) * 3, (0.5,) * 3), settings,
                 Runtime(torch.device("cpu"), progress=False)), model


def test_auto_accumulate_finds_the_fitting_micro_batch_and_keeps_the_full_batch_losses():
    full, _ = fit(1)
    auto, _ = fit("auto", most=5)  # micro-batches of 16 and 8 fail, 4 fits: 16 / 4 = --accumulate 4
    fixed, _ = fit(4)
    assert [h["accumulate"] for h in auto] == [4, 4]
    assert "accumulate" not in full[0]
    assert [h["loss"] for h in auto] == pytest.approx([h["loss"] for h in full], rel=1e-4)
    assert [h["loss"] for h in auto] == [h["loss"] for h in fixed]  # the probe leaves no trace


def test_out_of_memory_is_one_line_naming_the_accumulate_to_try():
    with pytest.raises(OutOfMemory) as info:
        fit(2, most=5)  # micro-batch 8 does not fit
    message = str(info.value)
    assert "\n" not in message
    assert "micro-batches of 8 image(s)" in message and "--accumulate 2)" in message
    assert "try --accumulate 4" in message and "--accumulate auto" in message
    with pytest.raises(OutOfMemory, match="not even one image per micro-batch fits"):
        fit("auto", most=0)


def test_embedding_halves_its_batch_on_out_of_memory_with_the_same_result():
    torch.manual_seed(0)
    model = KeypointViT(create_backbone("nano", 32), "none", 0)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    norm = Normalizer((0.5,) * 3, (0.5,) * 3)
    whole = embed(model, images, None, norm, torch.device("cpu"))
    halved = embed(limited(model, 6), images, None, norm, torch.device("cpu"), batch_size=16)
    assert torch.allclose(whole, halved, atol=1e-5)


def test_cli_out_of_memory_and_accumulate_auto(cli, tiny_args, tmp_path, monkeypatch):
    ok = cli("run", "--method", "vit", "--accumulate", "auto", "--results-dir", tmp_path / "a", *tiny_args)
    assert ok.exit_code == 0, ok.output
    record = json.loads(next((tmp_path / "a").glob("*.json")).read_text())
    assert record["config"]["accumulate"] == "auto" and record["history"][0]["accumulate"] == 1
    bad = cli("run", "--method", "vit", "--accumulate", "some", "--results-dir", tmp_path / "b", *tiny_args)
    assert bad.exit_code != 0 and "neither a whole number nor auto" in bad.output
    forward = KeypointViT.forward

    def guarded(self, x, *args, **kwargs):
        if self.training and x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(KeypointViT, "forward", guarded)
    oom = cli("run", "--method", "vit", "--results-dir", tmp_path / "c", *tiny_args)
    assert oom.exit_code != 0 and "Traceback" not in oom.output
    (line,) = [line for line in oom.output.splitlines() if "out of GPU memory" in line]
    assert line.startswith("Error: out of GPU memory") and "try --accumulate 2" in line
    assert not list((tmp_path / "c").glob("*.json"))


def test_ablate_records_a_failed_cell_goes_on_and_lists_it(tmp_path, monkeypatch, capsys):
    from harness.tables import ablate

    jobs, _ = ablate.plan("1", tmp_path, setting="tiny", seeds=1)
    jobs = jobs[:3]
    ran = []

    def execute(cfg, results_dir, **kwargs):
        if len(ran) == 1:
            ran.append(cfg)
            raise OutOfMemory("out of GPU memory training micro-batches of 64 image(s); try --accumulate 2")
        ran.append(cfg)
        return {}, None

    monkeypatch.setattr(ablate, "execute", execute)
    failed = ablate.sweep_local(jobs, tmp_path, None)
    assert failed == [jobs[1]] and len(ran) == 3  # the third still ran
    saved = json.loads(ablate.failure_path(tmp_path, jobs[1]).read_text())
    assert saved["kind"] == "OutOfMemory" and "try --accumulate 2" in saved["error"]
    assert saved["result"] == jobs[1].path.name
    err = capsys.readouterr().err
    assert "1 run(s) failed, recorded in" in err and f"[{jobs[1].cell.row} | {jobs[1].cell.col}]" in err
    monkeypatch.setattr(ablate, "execute", lambda cfg, results_dir, **kwargs: ({}, None))
    assert ablate.sweep_local([jobs[1]], tmp_path, None) == []
    assert not ablate.failure_path(tmp_path, jobs[1]).exists()  # a later success clears the record


def test_ablate_skips_a_run_another_live_sweep_holds_without_calling_it_failed(tmp_path, monkeypatch, capsys):
    from harness.engine.records import RunLock
    from harness.tables import ablate

    jobs, _ = ablate.plan("1", tmp_path, setting="tiny", seeds=1)
    jobs = jobs[:2]
    ran, busy = [], []

    def execute(cfg, results_dir, **kwargs):  # takes the run's lock first, as the real one does
        with RunLock(results_dir, ablate.result_path(results_dir, cfg).stem):
            ran.append(cfg)
        return {}, None

    monkeypatch.setattr(ablate, "execute", execute)
    with RunLock(tmp_path, jobs[0].path.stem):  # a live process (this one) holds the first run
        failed = ablate.sweep_local(jobs, tmp_path, None,
                                    ablate.SweepEvents(busy=lambda job, exc: busy.append((job, str(exc)))))
    assert failed == [] and ran == [jobs[1].cfg]  # the second still ran
    assert [job for job, _ in busy] == [jobs[0]] and "another process (pid" in busy[0][1]
    assert not (tmp_path / ablate.FAILED_FOLDER).exists()  # nothing recorded as failed
    assert "failed" not in capsys.readouterr().err


def test_ablate_events_end_a_run_only_after_it_wrote_its_record_and_count_every_job(tmp_path, monkeypatch):
    from harness.tables import ablate

    jobs, _ = ablate.plan("1", tmp_path, setting="tiny", seeds=1)
    jobs = jobs[:3]
    jobs[0].path.write_text("{}")  # finished by another sweep meanwhile: it starts and ends, never runs
    log = []

    def execute(cfg, results_dir, **kwargs):
        if cfg is jobs[2].cfg:
            raise ValueError("no data")
        log.append(("wrote", cfg.method, cfg.fold))
        return {}, None

    monkeypatch.setattr(ablate, "execute", execute)
    events = ablate.SweepEvents(started=lambda job: log.append(("started", job.cfg.method, job.cfg.fold)),
                                failed=lambda job, exc: log.append(("failed", str(exc))),
                                ended=lambda job: log.append(("ended", job.cfg.method, job.cfg.fold)))
    failed = ablate.sweep_local(jobs, tmp_path, None, events)
    keys = [(job.cfg.method, job.cfg.fold) for job in jobs]
    assert failed == [jobs[2]]
    assert log == [("started", *keys[0]), ("ended", *keys[0]),
                   ("started", *keys[1]), ("wrote", *keys[1]), ("ended", *keys[1]),
                   ("started", *keys[2]), ("failed", "no data"), ("ended", *keys[2])]


def test_ablate_fails_a_cell_whose_preflight_finds_a_problem_before_anything_runs(tmp_path, monkeypatch):
    from harness.tables import ablate

    jobs, _ = ablate.plan("1", tmp_path, setting="tiny", seeds=1)
    jobs = [jobs[0], next(j for j in jobs if j.cfg.method != jobs[0].cfg.method)]  # checked apart
    ran = []
    monkeypatch.setattr(ablate, "preflight_problems",
                        lambda cfg, results_dir: ["giraffes: its checkpoint need ~2.4 GB under /, 1.0 GB free"]
                        if cfg.method == jobs[1].cfg.method else [])
    monkeypatch.setattr(ablate, "execute", lambda cfg, results_dir, **kwargs: ran.append(cfg) or ({}, None))
    failed = ablate.sweep_local(jobs, tmp_path, None)
    assert failed == [jobs[1]] and ran == [jobs[0].cfg]
    assert "1.0 GB free" in json.loads(ablate.failure_path(tmp_path, jobs[1]).read_text())["error"]
