"""A plugin of every kind (method, keypoint source, reference source, featurizer, loader, metric, table),
each a file in a temporary folder on HARNESS_PLUGIN_PATH, with no edit to the package; tiny runs
through `harness run` reach every one of them."""
import json
import sys
import textwrap

import pytest

from harness.data.dataset import LOADERS
from harness.evaluation import metrics
from harness.keypoints.featurizers import FEATURIZERS
from harness.keypoints.references import REFERENCE_SOURCES
from harness.keypoints.sources import KEYPOINT_SOURCES
from harness.method import METHODS
from harness.tables.declarations import TABLES

REGISTRIES = (METHODS, KEYPOINT_SOURCES, REFERENCE_SOURCES, FEATURIZERS, LOADERS, metrics.METRICS, TABLES)

PLUGINS = {
    "every_method.py": '''
        from harness import Method, register_method


        @register_method("every-kpe", "KPE reading the run's --keypoints (a test's plugin)")
        def every_kpe():
            return Method(encoding="binary", point_source="keypoints")
    ''',
    "every_loader.py": '''
        from dataclasses import replace

        from harness.data.cards import Card
        from harness.data.dataset import LOADERS
        from harness.data.synthetic import SyntheticLoader


        @LOADERS.register("every-toy", "synthetic images under another loader (a test's plugin)")
        class ToyLoader(SyntheticLoader):
            def adhoc_card(self, name):
                if name != "every-toy":
                    return None
                return Card(name="every-toy", loader="every-toy", description="a test's dataset",
                            defaults={"keypoints": "every-centre"})

            def load(self, card, options, data_root):
                data = super().load(card, options, data_root)
                return replace(data, info={**data.info, "made_by": "every-toy"})
    ''',
    "every_source.py": '''
        import numpy as np

        from harness.data.dataset import image_sizes
        from harness.keypoints.sets import KeypointSet
        from harness.keypoints.sources import KEYPOINT_SOURCES


        @KEYPOINT_SOURCES.register("every-centre", "one point at each image's centre (a test's plugin)")
        def centre(data, cfg):
            points = image_sizes(data)[:, None, :] / 2.0
            return KeypointSet(("centre",), (), points, {"source": "every-centre"})
    ''',
    "every_reference.py": '''
        import numpy as np

        from harness.data.dataset import image_sizes
        from harness.keypoints.references.base import REFERENCE_SOURCES, ReferenceSource
        from harness.keypoints.sets import Reference


        @REFERENCE_SOURCES.register("every-ref", "two points at fixed fractions of the image (a test's plugin)")
        class FractionReference(ReferenceSource):
            options = {"inset": "fraction of the image between each point and its corner [0.25]"}

            def annotate(self, data, card, opts):
                row = self.row(data, card, opts)
                inset = float(opts.extra.get("inset", 0.25))
                w, h = image_sizes(data)[row]
                points = np.array([[inset * w, inset * h], [(1 - inset) * w, (1 - inset) * h]])
                return Reference(str(data.df["image_id"].iloc[row]), ("near", "far"), (), points,
                                 {"source": "every-ref", "inset": inset})
    ''',
    "every_featurizer.py": '''
        import torch.nn.functional as F

        from harness.keypoints.featurizers.base import FEATURIZERS, Featurizer


        @FEATURIZERS.register("every-feat", "average colour per 4x4 cell (a test's plugin)")
        class MeanColour(Featurizer):
            name = "every-feat"

            def __init__(self, size: int = 32, cell: int = 4, batch_size: int = 16):
                self.size, self.stride, self.batch_size = int(size), int(cell), int(batch_size)

            def config(self):
                return {"featurizer": "every-feat", "size": self.size, "cell": self.stride}

            def _features(self, images):
                return F.avg_pool2d(images, self.stride)
    ''',
    "every_metric.py": '''
        import numpy as np

        from harness.evaluation.metrics import metric


        @metric("every_top1", "every-top-1", "top-1 again, from a test's plugin", ("first_rank",))
        def every_top1(q):
            rank = q["first_rank"]
            return np.where(np.isnan(rank), np.nan, (rank == 1).astype(float))
    ''',
    "every_table.py": '''
        from harness.tables.cells import Axis, Table
        from harness.tables.declarations import declare

        declare(Table(id="every", title="The plugin method against the plain ViT (a test's plugin)",
                      rows=(Axis("plugin", {"method": "every-kpe"}), Axis("plain", {"method": "vit"})),
                      cols=(Axis("toy", {"dataset": "every-toy"}),), paper=((None,), (None,)),
                      base={"folds": 2}, translated=False, comparisons=(("plugin|toy", "plain|toy"),), order=15,
                      aliases=("e",)))
    ''',
}


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    """The plugin files in a folder on HARNESS_PLUGIN_PATH, every registry made to load plugins
    again; afterwards the registries, the metric order and sys.modules are as they were."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, text in PLUGINS.items():
        (folder / name).write_text(textwrap.dedent(text))
    for registry in REGISTRIES:
        registry.names()  # built-in plugins loaded first, so the copies restored afterwards hold them
    monkeypatch.setenv("HARNESS_PLUGIN_PATH", str(folder))
    for registry in REGISTRIES:
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(metrics, "ORDER", list(metrics.ORDER))
    yield folder
    for name in PLUGINS:
        sys.modules.pop(f"harness_plugins.{name[:-3]}", None)


def only_record(folder) -> dict:
    files = sorted(folder.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


TINY = ["--backbone", "nano", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--quiet",
        "--dataset-option", "identities=8", "--dataset-option", "images_per_identity=4",
        "--dataset-option", "image_size=32"]


def test_every_kind_is_listed_from_the_folder(plugin_folder, cli):
    out = cli("list").output
    for name in ("every-kpe", "every-centre", "every-ref", "every-feat", "every_top1", "every "):
        assert name in out, name
    assert "a test's plugin" in out
    assert "every-toy" in LOADERS.names()  # `harness list` shows datasets, not their loaders


def test_a_recipe_run_goes_through_every_kind(plugin_folder, cli, tmp_path):
    """Method, loader, reference source and featurizer (a recipe), and metric in one run; the
    plugin reference source's own option (`inset`) reaching it through --option, checked."""
    res = cli("run", "--method", "every-kpe", "--dataset", "every-toy", "--keypoints", "every-ref@every-feat",
              "--results-dir", tmp_path / "r", *TINY)
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1].startswith("every-kpe | every-toy")
    assert "every-top-1" in res.output  # the summary line shows the plugin metric
    rec = only_record(tmp_path / "r")
    assert rec["dataset"]["made_by"] == "every-toy"
    prov = rec["keypoints"]["provenance"]
    assert prov["featurizer"]["featurizer"] == "every-feat" and prov["reference"]["source"] == "every-ref"
    assert rec["metrics"]["every_top1"] == pytest.approx(rec["metrics"]["top1"])
    annotate = ["keypoints", "annotate", "--dataset", "every-toy", "--source", "every-ref"]
    bad = cli(*annotate, "--option", "margin=0.1")
    assert bad.exit_code != 0 and "does not take --option margin; it takes: inset" in bad.output
    ok = cli(*annotate, "--option", "inset=0.1", "--dataset-option", "identities=8", "--dataset-option",
             "image_size=32", "--dataset-option", "images_per_identity=4")
    assert ok.exit_code == 0, ok.output
    assert "near (3, 3)" in ok.output  # 0.1 of a 32-pixel image


def test_a_plugin_keypoint_source_feeds_a_run(plugin_folder, cli, tmp_path):
    res = cli("run", "--method", "every-kpe", "--dataset", "every-toy", "--results-dir", tmp_path / "r", *TINY)
    assert res.exit_code == 0, res.output
    rec = only_record(tmp_path / "r")
    assert rec["config"]["keypoints"] == "every-centre"  # the plugin loader's card default
    assert rec["keypoints"]["provenance"]["source"] == "every-centre"


def test_an_installed_package_adds_a_featurizer_through_its_entry_point_group(tmp_path, monkeypatch):
    """The same featurizer file, shipped as a package behind the `harness.featurizers` group."""
    site = tmp_path / "site"
    dist = site / "every_feat_pkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: every-feat-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.featurizers]\nevery-feat = every_feat_pkg\n")
    (site / "every_feat_pkg.py").write_text(textwrap.dedent(PLUGINS["every_featurizer.py"]))
    monkeypatch.syspath_prepend(str(site))
    FEATURIZERS.names()
    monkeypatch.delenv("HARNESS_PLUGIN_PATH", raising=False)
    monkeypatch.setattr(FEATURIZERS, "_entries", dict(FEATURIZERS._entries))
    monkeypatch.setattr(FEATURIZERS, "_loaded", False)
    try:
        feat = FEATURIZERS.create("every-feat", size=16)
        assert feat.config() == {"featurizer": "every-feat", "size": 16, "cell": 4}
    finally:
        sys.modules.pop("every_feat_pkg", None)


def test_a_plugin_table_is_declared_in_its_place_and_sweeps(plugin_folder, cli):
    """The table file registers itself: `harness ablate` knows it by id and alias, plans its cells with
    the plugin method and loader, and it stands where its order puts it."""
    from harness.tables.declarations import table_ids

    assert table_ids()[:3] == ["1", "every", "2"]  # order 15: between Tables 1 and 2
    res = cli("ablate", "e", "--small", "--seeds", "1", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "4 run(s) planned (small)" in res.output  # 2 rows x 2 folds x 1 seed
    assert "harness run --method every-kpe --dataset every-toy" in res.output
    twice = cli("ablate", "every", "--small", "--seeds", "1", "--row", "plain", "--dry-run")
    assert "2 run(s) planned (small)" in twice.output
    from harness.core.errors import RegistryError
    from harness.tables.cells import Axis, Table
    from harness.tables.declarations import declare

    with pytest.raises(RegistryError, match="duplicate table name '2': already registered by"):
        declare(Table(id="2", title="again", rows=(Axis("r"),), cols=(Axis("c"),), paper=((None,),)))
