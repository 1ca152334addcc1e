"""Each run-config field is declared once (its dataclass metadata): the CLI help, the training and
run-only field groups and TrainSettings come from there, and the experiment hashes that name the
committed result files stay what they were. A method may declare its loss terms; the default
objective is the old ArcFace + ce_weight x CE, bit for bit."""
import json
import math
import sys
import textwrap
from dataclasses import fields, replace

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ArcFaceLoss

from harness.config import LEGACY, RUN_FIELDS, TRAINING_FIELDS, RunConfig
from harness.core.errors import RegistryError
from harness.engine.augment import RandAugment
from harness.engine.settings import TrainSettings
from harness.method import METHODS, Method
from harness.model.backbones import ALIASES
from harness.model.losses import LOSS_TERMS, build_losses, canonical_losses

# the hashes before the fields were declared with metadata (and before --losses existed)
SWEEP_LIKE = dict(dataset="macaquefaces", seed=2, folds=5, fold=3, optimizer="sgd", augment="randaugment",
                  exclude="same-day", dataset_options=(("a", "1"),))
HASHES = {"ckpe": "e03403051a", "vit": "dce44779c6", "wildlife-baseline": "5638bc2315"}


def test_experiment_hashes_of_fixed_configs_are_unchanged():
    # with the keypoint channel every run had before it was an option (zero init, lr x1)
    assert RunConfig(**LEGACY).experiment_hash() == "0c29742e96"
    assert RunConfig().experiment_hash() != "0c29742e96"  # the chosen default is another experiment
    for method, expected in HASHES.items():
        cfg = METHODS.create(method).applied(RunConfig(method=method, **SWEEP_LIKE, **LEGACY))
        assert cfg.experiment_hash() == expected, method
        assert cfg.losses is None  # the default objective stays out of the hash


def test_field_groups_are_derived_from_the_declarations():
    assert set(RUN_FIELDS) == {"seed", "device", "fold", "accumulate", "compile", "allow_small_test"}
    assert TRAINING_FIELDS == ("epochs", "batch_size", "accumulate", "optimizer", "lr", "lr_min", "momentum",
                               "weight_decay", "warmup_epochs", "ce_weight", "arcface_margin", "arcface_scale",
                               "hflip", "augment", "randaugment_ops", "randaugment_magnitude", "compile", "losses",
                               "kpe_init", "kpe_lr_scale")
    assert all(f.metadata["help"] for f in fields(RunConfig))


def test_run_help_shows_every_field_from_its_declaration(cli):
    out = " ".join(cli("run", "--help").output.split())
    for f in fields(RunConfig):
        if f.name == "dataset_options":  # the shared --dataset-option carries its own help
            continue
        flag = "--" + f.name.replace("_", "-")
        first_words = " ".join(f.metadata["help"].split()[:3])
        assert flag in out and first_words in out, f.name
    assert "timm model name or alias: " + ", ".join(ALIASES) in out  # the aliases filled in by the CLI


def _old_settings(cfg):
    """TrainSettings as from_config built it by hand before the fields declared it."""
    augment = RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude) if cfg.augment == "randaugment" else None
    return TrainSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         warmup_epochs=cfg.warmup_epochs, hflip=cfg.hflip, seed=cfg.seed, optimizer=cfg.optimizer,
                         momentum=cfg.momentum if cfg.momentum is not None else 0.9, lr_min=cfg.lr_min,
                         accumulate=cfg.accumulate, augment=augment, compile_backend=cfg.compile,
                         kpe_lr_scale=cfg.kpe_lr_scale)  # added with the option (issue 33)


def test_train_settings_copy_the_declared_fields():
    ckpe = METHODS.create("ckpe")
    for cfg in (RunConfig(), RunConfig(optimizer="sgd", momentum=0.8, lr_min=1e-6, accumulate="auto", seed=3,
                                       augment="randaugment", randaugment_ops=3, compile="inductor", hflip=0.5)):
        for applied in (cfg, ckpe.applied(cfg)):
            assert TrainSettings.from_config(applied) == _old_settings(applied)


def test_the_default_objective_is_the_old_formula_on_a_fixed_batch():
    g = torch.Generator().manual_seed(3)
    emb, labels = torch.randn(12, 16, generator=g), torch.arange(12) % 4
    cfg = RunConfig(arcface_margin=0.3, arcface_scale=32.0, ce_weight=0.2)
    torch.manual_seed(0)
    terms = build_losses(None, 16, 4, cfg)
    new = sum(t.weight * t(emb, labels) for t in terms)
    torch.manual_seed(0)  # the old construction: ArcFace's weights first, then the CE head
    arcface, head = ArcFaceLoss(4, 16, margin=math.degrees(0.3), scale=32.0), torch.nn.Linear(16, 4)
    old = arcface(emb, labels) + 0.2 * F.cross_entropy(head(emb), labels)
    assert [t.name for t in terms] == ["arcface", "ce"]
    assert torch.equal(new, old)
    assert [t.name for t in build_losses(None, 16, 4, replace(cfg, ce_weight=0.0))] == ["arcface"]


def test_losses_are_spelled_one_way_and_a_default_spelling_keeps_the_hash():
    cfg = RunConfig()
    assert canonical_losses("ArcFace, ce=0.2", cfg) is None
    assert canonical_losses("arcface,ce,triplet=1", cfg) == "arcface,ce,triplet"
    assert canonical_losses("arcface,ce=0.5", cfg) == "arcface,ce=0.5"
    ckpe = METHODS.create("ckpe")
    default = ckpe.applied(cfg).experiment_hash()
    assert ckpe.applied(replace(cfg, losses="arcface,ce")).experiment_hash() == default
    assert ckpe.applied(replace(cfg, losses="arcface,ce,triplet")).experiment_hash() != default
    assert METHODS.create("wildlife-baseline").applied(replace(cfg, losses="triplet")).losses is None  # no training


def test_an_unknown_or_malformed_term_is_a_one_line_error(cli):
    with pytest.raises(RegistryError, match=r"^unknown loss term 'tripplet'; valid loss terms: arcface, ce, triplet; "
                       r"did you mean 'triplet'\?$"):
        Method(losses=("arcface", "tripplet"))
    with pytest.raises(ValueError, match="is not a number"):
        canonical_losses("arcface,ce=lots", RunConfig())
    out = cli("run", "--method", "ckpe", "--losses", "arcface,hinge", "--dry-run")
    assert out.exit_code != 0
    assert out.output.strip().splitlines()[-1].endswith("unknown loss term 'hinge'; valid loss terms: arcface, ce, "
                                                        "triplet")


TRIPLET_METHOD = '''
    from harness import Method, register_method


    @register_method("vit-triplet", "plain ViT trained with ArcFace + CE + a triplet term (a test's plugin)")
    def vit_triplet():
        return Method(losses=("arcface", "ce", "triplet"))
'''


@pytest.fixture
def triplet_plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "vit_triplet.py").write_text(textwrap.dedent(TRIPLET_METHOD))
    METHODS.names()  # the built-in ones first, so the copy restored afterwards holds them
    monkeypatch.setenv("HARNESS_PLUGIN_PATH", str(folder))
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(METHODS, "_loaded", False)
    yield folder
    sys.modules.pop("harness_plugins.vit_triplet", None)


def test_a_method_declaring_a_triplet_term_trains_a_tiny_job(triplet_plugin, cli, tmp_path, tiny_args):
    res = cli("run", "--method", "vit-triplet", "--results-dir", tmp_path / "r", *tiny_args)
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "r").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["config"]["losses"] == "arcface,ce,triplet" and rec["config_origins"]["losses"] == "method"
    assert {"arcface", "ce", "triplet", "loss"} <= set(rec["history"][0])
    assert all(math.isfinite(h["triplet"]) for h in rec["history"])
    plain = RunConfig.from_dict({**rec["config"], "losses": None})
    assert rec["experiment"] != plain.experiment_hash()  # its records never collide with default-loss ones
    assert "triplet" in LOSS_TERMS and "loss terms" in cli("list").output


def test_triplet_term_is_the_batch_hard_hinge_on_cosine_distances():
    from harness.model.losses import BatchHardTriplet
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, -0.6], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])  # the last image has no positive: not an anchor
    x = torch.nn.functional.normalize(emb, dim=1)
    dist = 1 - x @ x.T
    expected = []
    for a in range(4):
        pos = max(dist[a, p] for p in range(5) if labels[p] == labels[a] and p != a)
        neg = min(dist[a, n] for n in range(5) if labels[n] != labels[a])
        expected.append(max(0.0, float(pos - neg) + 0.3))
    got = BatchHardTriplet(margin=0.3)(emb.requires_grad_(), labels)
    assert got.item() == pytest.approx(sum(expected) / 4, abs=1e-6) and got.item() > 0
    got.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    alone = BatchHardTriplet()(torch.randn(3, 2, requires_grad=True), torch.tensor([0, 1, 2]))
    assert alone.item() == 0.0  # no anchor has a positive: nothing to learn, and still differentiable
