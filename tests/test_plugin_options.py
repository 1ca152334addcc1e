"""`--option KEY=VALUE` of `harness keypoints propagate` / `annotate`: checked against the chosen
plugin's own options, the old per-plugin flags as aliases of it, and --help listing every plugin's
options read from the plugins."""
import pytest

from harness.keypoints.references import AnnotateOptions, annotate_options

DS = ["--dataset", "synthetic", "--dataset-option", "identities=10", "--dataset-option", "images_per_identity=6",
      "--dataset-option", "image_size=32"]


def last_line(res) -> str:
    assert res.exit_code == 0, res.output
    return res.output.strip().splitlines()[-1]


def test_option_reaches_the_featurizer_as_its_old_flag_does(cli):
    last_line(cli("keypoints", "annotate", *DS, "--source", "ground-truth", "--image", "3", "--name", "gt3o"))
    base = ["keypoints", "propagate", *DS, "--reference", "gt3o", "--featurizer", "spin", "--quiet"]
    by_option = last_line(cli(*base, "--option", "size=32", "--option", "step=4"))
    by_flag = last_line(cli(*base, "--size", "32", "--step", "4"))
    # the name is the featurizer's config hash: the same name means the same featurizer settings
    assert by_option.split(" | ")[0] == by_flag.split(" | ")[0]
    other = last_line(cli(*base, "--option", "size=32", "--option", "step=2"))
    assert other.split(" | ")[0] != by_flag.split(" | ")[0]


@pytest.mark.parametrize("args, message", [
    (["--featurizer", "spin", "--option", "timestep=5"], "featurizer spin does not take --timestep"),
    (["--featurizer", "sift", "--option", "step"], "--option expects KEY=VALUE"),
    (["--featurizer", "sift", "--step", "4", "--option", "step=2"], "--step 4 and --option step=2 disagree"),
])
def test_bad_featurizer_options_fail_in_one_line(cli, args, message):
    res = cli("keypoints", "propagate", *DS, "--reference", "x", *args)
    assert res.exit_code != 0 and message in res.output, res.output
    assert "Traceback" not in res.output


def test_reference_option_is_checked_against_the_source(cli):
    res = cli("keypoints", "annotate", *DS, "--source", "ground-truth", "--option", "timeout=5")
    assert res.exit_code != 0 and "reference source ground-truth does not take --option timeout" in res.output
    res = cli("keypoints", "annotate", *DS, "--source", "gpt4", "--option", "max_retries=many")
    assert res.exit_code != 0 and "max_retries must be a number" in res.output, res.output


def test_annotate_options_are_typed_like_their_fields():
    opts = annotate_options("gpt4", {"max_retries": "2", "timeout": "0.5", "base_url": "http://x"}, num_keypoints=3)
    assert opts == AnnotateOptions(num_keypoints=3, max_retries=2, timeout=0.5, base_url="http://x")
    expert = annotate_options("expert", {"reference_file": "~/a.json"})
    assert expert.reference_file.name == "a.json" and "~" not in str(expert.reference_file)


def test_help_lists_each_plugins_options_from_the_plugin(cli):
    propagate = cli("keypoints", "propagate", "--help").output
    assert "Featurizer options" in propagate
    for text in ("unet_batch=16", "rings=5", "patch=12.0", "dinov2"):
        assert text in propagate, text
    annotate = cli("keypoints", "annotate", "--help").output
    assert "Reference source options" in annotate and "max_retries" in annotate and "ground-truth" in annotate
