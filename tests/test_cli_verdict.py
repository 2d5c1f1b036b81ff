"""The command line tells the truth about privacy: the verdict warning and ``--require``.

Real processes on real stores: photo tiles mixed without hardening in 8x8 blocks, which the
audit calls weak by a wide margin (A about 0.94), and LFW faces mixed in whole-label groups
with every hardening option given as a flag, which it calls good or moderate. The mixing
flags are given explicitly, so that the tests hold whatever the presets become; what they
check follows the verdict the audit returns.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from test_cli_support import photo_subset, read_images, run_cli, snapshot, write_store

from fastmix.audit.report import AuditReport, meets, needs
from fastmix.cli import EXIT_REQUIREMENT
from fastmix.cli.verdict import warning_lines
from fastmix.errors import BadInputError
from fastmix.store.hdf5.record import read_mix_record

#: Unhardened permute mode in 8x8 blocks of 32x32 photo tiles: weak (docs/privacy.md).
WEAK_FLAGS = ("--mode", "permute", "--block", "8x8", "--donors", "10", "--prob", "1",
              "--orient", "none", "--jitter", "none", "--seam-blur", "0", "--group", "11")
#: Every hardening option and whole-label groups on LFW faces in 5x5 blocks: good or
#: moderate, far from weak (A 0.04, 10% re-identified when measured for this test).
HARDENED_FLAGS = ("--mode", "permute", "--block", "5x5", "--prob", "1", "--orient", "d4",
                  "--jitter", "default", "--seam-blur", "1", "--group", "window")


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING: privacy audit verdict" in line]


@pytest.fixture(scope="module")
def tiles_store(photo_tiles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verdict_tiles")
    images, labels = photo_subset(photo_tiles, count=48)
    write_store(folder / "src.h5", images, labels)
    return folder


@pytest.fixture(scope="module")
def weak_required(tiles_store):
    """``mix --require good`` (without ``--audit``) of the tiles: weak, so exit status 3."""
    result = run_cli("mix", "src.h5", "dst.h5", "--key-file", "weak.key", "--new-key",
                     *WEAK_FLAGS, "--require", "good", "--audit-sample", 12, "--quiet",
                     cwd=tiles_store)
    return tiles_store, result


def test_require_good_on_a_weak_store_exits_3_and_keeps_the_output(weak_required):
    folder, result = weak_required
    assert result.returncode == EXIT_REQUIREMENT == 3, result.stderr
    # --require implies --audit: the verdict line is printed as with --audit.
    assert "audit of" in result.stdout and "WEAK" in result.stdout
    failed = [line for line in result.stderr.splitlines() if "requirement not met" in line]
    assert len(failed) == 1
    assert "--require good" in failed[0] and "WEAK" in failed[0]
    assert "'dst.h5' is kept" in failed[0]
    # The output is a complete, valid mixed store, and its key is kept beside it.
    with h5py.File(folder / "dst.h5", "r") as mixed:
        assert read_mix_record(mixed["images"]) is not None
        assert mixed["images"].shape == (48, 32, 32, 3)
    assert not np.array_equal(read_images(folder / "dst.h5"), read_images(folder / "src.h5"))
    assert (folder / "weak.key").is_file()
    assert (folder / "weak.key").read_text().strip() not in result.stdout + result.stderr


def test_a_weak_verdict_is_a_prominent_warning_with_what_to_do(weak_required):
    _, result = weak_required
    (warning,) = warnings_of(result.stderr)
    assert warning.startswith("fastmix mix: WARNING: privacy audit verdict WEAK: advantage A ")
    assert "re-identified" in warning and f"good needs {needs('good')}" in warning
    assert "see docs/privacy.md" in warning
    advice = result.stderr.splitlines()[result.stderr.splitlines().index(warning) + 1]
    # Worded from the settings the audit measured: these blocks, no hardening, small groups.
    assert advice.startswith("fastmix mix: to protect more, mix again with smaller blocks")
    assert "these were 8x8" in advice and "--privacy" in advice and "--group window" in advice


def test_mix_audit_prints_the_warning_and_exits_0_without_require(tiles_store):
    result = run_cli("mix", "src.h5", "plain.h5", "--key-file", "plain.key", "--new-key",
                     *WEAK_FLAGS, "--audit", "--audit-sample", 12, "--quiet", cwd=tiles_store)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1 and "WEAK" in result.stdout
    assert len(warnings_of(result.stderr)) == 1
    assert "requirement not met" not in result.stderr
    assert (tiles_store / "plain.h5").is_file()


def test_audit_command_gates_and_reports_the_requirement_in_json(weak_required):
    folder, _ = weak_required
    arguments = ("audit", "src.h5", "dst.h5", "--key-file", "weak.key", "--sample", 12,
                 "--quiet")
    before = snapshot(folder)
    gated = run_cli(*arguments, "--require", "moderate", "--json", cwd=folder)
    assert gated.returncode == 3, gated.stderr
    report = json.loads(gated.stdout)
    assert report["verdict"] == "weak"
    assert (report["required"], report["requirement_met"]) == ("moderate", False)
    assert len(warnings_of(gated.stderr)) == 1
    assert "requirement not met: --require moderate" in gated.stderr
    plain = run_cli(*arguments, cwd=folder)
    assert plain.returncode == 0, plain.stderr
    assert "verdict:" in plain.stdout and len(warnings_of(plain.stderr)) == 1
    assert snapshot(folder) == before  # an audit writes nothing


@pytest.fixture(scope="module")
def faces_store(tmp_path_factory):
    pytest.importorskip("skimage.data")
    from fastmix.samples import lfw_faces_uint8

    folder = tmp_path_factory.mktemp("verdict_faces")
    images, labels = lfw_faces_uint8()
    with h5py.File(folder / "src.h5", "w") as store:
        store.create_dataset("images", data=images, chunks=(10, 25, 25))
        store["labels"] = labels
    return folder


def test_require_moderate_on_a_well_protected_store_exits_0(faces_store):
    result = run_cli("mix", "src.h5", "dst.h5", "--key-file", "faces.key", "--new-key",
                     *HARDENED_FLAGS, "--require", "moderate", "--audit-sample", 100,
                     "--quiet", cwd=faces_store)  # whole labels: the groups are whole labels
    assert result.returncode == 0, result.stderr
    assert "requirement not met" not in result.stderr
    (line,) = result.stdout.strip().splitlines()
    verdict = next(rating for rating in ("good", "moderate", "weak", "uncertain")
                   if f": {rating.upper()} (" in line)
    if verdict == "uncertain":  # counted as the worse of its two ratings
        verdict = line.split(": UNCERTAIN (")[1].split(" or ")[0]
    assert meets(verdict, "moderate"), line
    # The warning appears exactly for a verdict short of good.
    assert len(warnings_of(result.stderr)) == (verdict != "good")
    # The same store audited with --require good: exit 3 exactly when it is not good.
    audited = run_cli("audit", "src.h5", "dst.h5", "--key-file", "faces.key", "--sample", 40,
                      "--require", "good", "--json", "--quiet", cwd=faces_store)
    report = json.loads(audited.stdout)
    assert report["requirement_met"] == (report["verdict"] == "good")
    assert audited.returncode == (0 if report["verdict"] == "good" else 3), audited.stderr


@pytest.mark.parametrize("arguments", [
    ("dst.h5", "--require", "bogus"),
    ("--in-place", "--require", "good"),
])
def test_require_refused_before_anything_is_done(tiles_store, arguments):
    before = snapshot(tiles_store)
    result = run_cli("mix", "src.h5", *arguments, "--key-file", "fresh.key", "--new-key",
                     *WEAK_FLAGS, cwd=tiles_store)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--require" in line
    assert snapshot(tiles_store) == before  # no key, no output, SRC unchanged


def test_audit_require_needs_the_attack(tiles_store):
    result = run_cli("audit", "src.h5", "src.h5", "--require", "good", "--no-attack",
                     cwd=tiles_store)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--no-attack" in line


@pytest.mark.parametrize("command", ["mix", "audit"])
def test_help_documents_exit_status_3(tiles_store, command):
    result = run_cli(command, "--help", cwd=tiles_store)
    flat = " ".join(result.stdout.split())
    assert "--require good|moderate" in flat
    assert "3 the audit verdict is worse than --require asks" in flat


def test_verdict_order():
    assert meets("good", "good") and meets("good", "moderate") and meets("moderate", "moderate")
    assert not meets("moderate", "good") and not meets("weak", "moderate")
    assert not meets("unknown", "moderate")
    assert meets("weak", "weak") and meets("good", "weak")
    with pytest.raises(BadInputError, match="good"):
        meets("good", "excellent")


def _report(verdict: str | None = None, figures=None, intervals=None,
            **settings) -> AuditReport:
    """Return a report of these figures (or a verdict's typical ones), rated as the audit does."""
    from fastmix.audit.auditing import set_verdict

    typical = {"weak": (0.6, 0.7, 0.3), "moderate": (0.2, 0.3, 0.0), "good": (0.05, 0.1, 0.0)}
    advantage, reidentified, restored_90 = figures or typical[verdict]
    report = AuditReport(settings={"mode": "permute", "block": [24, 24], **settings}, images=10,
                         sampled=10, displaced_fraction=1.0, largest_share_mean=0.1,
                         largest_share_max=0.1, advantage=advantage,
                         reidentified_fraction=reidentified, restored_90_fraction=restored_90,
                         intervals=intervals or {})
    set_verdict(report)
    assert verdict is None or report.verdict == verdict
    return report


def test_the_warning_follows_the_verdict_and_the_settings():
    assert warning_lines(_report("good"), "audit") == []
    assert _report("good").meets("good") and not _report("moderate").meets("good")
    hardened = {"orient": "d4", "jitter": [0.1, 0.2, 0.2], "seam_blur": 1.0, "group": 11}
    warning, advice = warning_lines(_report("moderate", **hardened), "mix")
    assert ("verdict MODERATE: advantage A 0.200 >= 0.15; re-identified 0.300 >= 0.2 "
            "(good needs") in warning
    assert "smaller blocks (--block; these were 24x24)" in advice
    assert "--group window" in advice and "--privacy" not in advice
    # Everything measured to help is already in use: only smaller blocks remain.
    _, advice = warning_lines(_report("moderate", **dict(hardened, group="window")), "audit")
    assert advice.startswith("fastmix audit: to protect more, run fastmix mix again with "
                             "smaller blocks (--block; these were 24x24), and audit again")


def _named(warning: str) -> set[str]:
    """Return the figures a warning line names as having made the verdict."""
    because = warning.split("privacy audit verdict ")[1].split(" (good needs")[0]
    return {name for name in ("advantage A", "re-identified", "images restored >= 90%")
            if name in because}


@pytest.mark.parametrize("figures, intervals, verdict, named, threshold", [
    # re-identification alone makes it moderate: the warning says so, not "restores"
    ((0.05, 0.32, 0.0), {"advantage": [0.02, 0.09], "reidentified_fraction": [0.25, 0.4]},
     "moderate", {"re-identified"}, "re-identified 0.320 [0.250, 0.400] >= 0.2"),
    # the advantage alone
    ((0.3, 0.1, 0.0), {"advantage": [0.22, 0.38], "reidentified_fraction": [0.05, 0.15]},
     "moderate", {"advantage A"}, "advantage A 0.300 [0.220, 0.380] >= 0.15"),
    # images restored to 90% alone make it weak
    ((0.3, 0.1, 0.2), {"restored_90_fraction": [0.12, 0.3]}, "weak",
     {"images restored >= 90%"}, "images restored >= 90% 0.200 [0.120, 0.300] >= 0.1"),
    # re-identification whose interval holds 0.2: uncertain, between moderate and good
    ((0.05, 0.22, 0.0), {"advantage": [0.01, 0.1], "reidentified_fraction": [0.12, 0.33]},
     "uncertain", {"re-identified"}, "re-identified 0.220 [0.120, 0.330] holds 0.2"),
])
def test_the_warning_names_the_figures_that_made_the_verdict(figures, intervals, verdict, named,
                                                             threshold):
    report = _report(figures=figures, intervals=intervals)
    assert report.verdict == verdict
    warning, advice = warning_lines(report, "audit")
    assert f"verdict {verdict.upper()}" in warning and threshold in warning
    assert _named(warning) == named
    # the verdict's own sentence names the same figures
    assert threshold in report.verdict_text
    if verdict == "moderate":
        other = ({"advantage A", "re-identified"} - named).pop()
        assert other not in report.verdict_text
    if verdict == "uncertain":
        assert "UNCERTAIN (moderate or good)" in warning and "--sample, --time" in advice
        assert report.verdict_range == ["good", "moderate"]
        assert report.meets("moderate") and not report.meets("good")
