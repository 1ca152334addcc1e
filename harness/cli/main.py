"""The `harness` command line: the root group. User mistakes end in one line (click.ClickException),
never a traceback.

The commands live in their own modules (run.py, data.py, keypoints.py, tables.py) and are imported
when one of them is invoked: they import torch, timm and pandas, seconds of start-up that
`harness --help` does not need. ``COMMANDS`` names each with the line the root help shows.
"""
from __future__ import annotations

import importlib

import click

from ..core.registry import did_you_mean

# name -> (module under harness.cli, attribute, the one line `harness --help` shows: a test checks
# it against the command's own short help, cut at 80 characters)
COMMANDS = {
    "run": ("run", "run_cmd", "Train and evaluate one method on one dataset; write results/<name>.json."),
    "list": ("run", "list_cmd", "Methods, keypoint sources, reference sources, featurizers, datasets, metrics,..."),
    "evaluate": ("run", "evaluate_cmd", "Score a backbone without training: every metric and protocol, an ordinary..."),
    "data": ("data", "data_group", "Datasets: list what is present, download what is not."),
    "keypoints": ("keypoints", "keypoints_group",
                  "Reference keypoints on one image -> every image (diffusion/DINOv2/SIFT..."),
    "ablate": ("tables", "ablate_cmd",
               "Run the cells of TABLE (an id or alias `harness list` shows, or all) that..."),
    "leaderboard": ("tables", "leaderboard_cmd",
                    "Regenerate leaderboard.md, its plots and the pages' generated blocks from..."),
    "runs": ("tables", "runs_cmd", "The experiments in --results-dir, oldest first: id, method, dataset,..."),
    "compare": ("tables", "compare_cmd", "Paired comparison FIRST - SECOND: each a result file, a folder of one..."),
    "calibrate": ("tables", "calibrate_cmd",
                  "A/A test of the intervals on RESULTS_DIR's records: every experiment with..."),
    "report": ("tables", "report_cmd", "Write a static HTML site of the results (opens from disk, loads nothing from..."),
    "tune": ("tables", "tune_cmd", "Choose the small setting's training settings and featurizer on an inner..."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when invoked, not when the group is built."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        # by name, so the commands' heavy imports wait for their use (no import circle is dodged:
        # no command module imports this one)
        return getattr(importlib.import_module(f"{__package__}.{module}"), attribute)

    def format_commands(self, ctx, formatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_line) for name, (_, _, help_line) in COMMANDS.items()])

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            raise click.UsageError(f"no such command {name!r}; valid: {', '.join(COMMANDS)}"
                                   f"{did_you_mean(name, COMMANDS)}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keypoint-reid-harness")
def main():
    """Keypoint-aware animal re-identification benchmark harness."""


if __name__ == "__main__":
    main()
