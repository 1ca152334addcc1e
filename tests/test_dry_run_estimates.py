"""`--dry-run` shows what a run would cost on a GPU box, with no data and no downloads."""


def test_dataset_all_dry_run_prints_memory_and_downloads_even_without_data(cli, tmp_path):
    res = cli("run", "--method", "ckpe", "--dataset", "all", "--dry-run", "--gpu-memory", "24",
              "--data-root", tmp_path / "nothing", "--results-dir", tmp_path / "r")
    assert "Traceback" not in res.output and res.exit_code != 0  # the missing data is still an error
    memory = [x for x in res.output.splitlines() if x.strip().startswith("memory: ")]
    downloads = [x for x in res.output.splitlines() if x.strip().startswith("downloads: ")]
    assert len(memory) == len(downloads) == 4  # one per dataset, printed before the data error
    # ViT-L at the cards' batch 128 needs about 28 GB: it fits 24 GB with two micro-batches
    assert all("GB peak GPU memory training at batch 128" in x and "on 24 GB: --accumulate 2" in x for x in memory)
    assert all("backbone large ~1.2 GB" in x and "featurizer dift" in x for x in downloads)
    assert "4 of 4 datasets cannot run" in res.output
    assert not (tmp_path / "r").exists()


def test_ablate_dry_run_prints_estimates_per_cell(cli, tmp_path):
    res = cli("ablate", "4", "--dry-run", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if x.strip().startswith("memory: ")]
    assert lines and all("downloads: " in x for x in lines)
    assert any("632M parameters" in x or "631M parameters" in x for x in lines)  # ViT-H/14's row


def test_run_checks_weights_before_training_anything(cli, tmp_path, monkeypatch):
    # offline, hub weights that are not cached: said before the first run trains, nothing written
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    res = cli("run", "--method", "vit", "--dataset", "synthetic", "--backbone", "vit_tiny_patch16_224", "--pretrained",
              "--image-size", "32", "--epochs", "1", "--results-dir", tmp_path / "r")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "would stop a run after it started" in res.output and "HF_HUB_OFFLINE is set" in res.output
    assert not list((tmp_path / "r").glob("*.json"))


def test_dry_run_says_an_undated_dataset_cannot_exclude_same_day(cli, tmp_path):
    # the synthetic dataset is dated only with `sessions`, known from its options: no image is made
    args = ["run", "--method", "vit", "--dataset", "synthetic", "--exclude", "same-day", "--dry-run",
            "--results-dir", tmp_path / "r", "--dataset-option", "identities=10"]
    res = cli(*args)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert res.output.splitlines()[-1] == (
        "Error: --exclude same-day needs capture dates, and dataset synthetic has none (no `date` column) (the "
        "synthetic dataset has them with --dataset-option sessions=4); run without --exclude")
    assert "result: " in res.output  # the plan is still shown before the error
    dated = cli(*args, "--dataset-option", "sessions=3")
    assert dated.exit_code == 0, dated.output
