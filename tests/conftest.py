import os

# The cuda backend's tests run in numba.cuda's simulator unless NUMBA_ENABLE_CUDASIM=0 is
# set (on a machine with a GPU). It must be set before numba.cuda is first imported.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import re

import pytest

import fastmix

#: Modules whose tests take more than a few seconds each on the 2-core machine (measured with
#: ``pytest --durations=0``): CNN training, notebooks, the preset verdicts' audits, the
#: in-place torture loops, clusters, the CUDA simulator. ``make check`` (``-m "not slow"``)
#: leaves them out; ``make test`` runs them. A single slow test elsewhere carries
#: ``@pytest.mark.slow`` itself.
SLOW_MODULES = frozenset({
    "test_cluster", "test_cuda", "test_demo", "test_harden_audit", "test_hostile_corpus",
    "test_inplace_torture", "test_notebook_privacy", "test_notebook_quickstart",
    "test_preset_verdicts", "test_store_kill", "test_utility_deep",
})
#: Single tests elsewhere that took over 1.5 s each (by function name, all their cases):
#: ``make check`` stays under 2 minutes, most of it the first compile of the kernels.
SLOW_TESTS = frozenset({
    # over 1.2 s each on a quiet machine (make check measured 132 s with them, 2026-12-07)
    "test_small_samples_of_one_store_agree_with_a_large_one",
    "test_each_cpu_kernel_equals_oracle",  # hardening format 2, 2-3 s each on 6x6 blocks
    "test_stores_record_the_format_and_verify_reproduces_it",
    "test_a_weak_verdict_is_a_prominent_warning_with_what_to_do",
    "test_preview_never_writes_onto_its_store_or_a_key",
    "test_one_way_store_mixed_again_is_not_told_to_unmix",
    "test_json_errors_are_json_on_stdout_with_exit_2", "test_cli_refuses_a_missing_store",
    "test_bench_prints_the_table", "test_verify_fails_on_a_tampered_store",
    "test_orientation_alone_stays_reversible", "test_cli_skips_and_names_the_broken_file",
    "test_verify_passes_on_the_mixed_pair", "test_unpartnered_images_warn_in_one_line",
    "test_already_mixed_store_is_refused_unless_force",
    "test_attack_reaches_the_strength_target_on_lfw",
    "test_audit_command_gates_and_reports_the_requirement_in_json",
    "test_cli_audits_stores_as_json", "test_cli_reads_a_store_without_attributes_given_the_grid",
    "test_custom_names_string_labels_quiet_and_overwrite", "test_dtypes_equal_oracle",
    "test_each_cpu_lookup_kernel_equals_oracle", "test_hardened_mix_equals_oracle",
    "test_hardened_store_is_checked_through_the_key",
    "test_in_place_mix_equals_new_file_and_unmixes",
    "test_mix_array_equals_oracle", "test_mix_audit_prints_the_warning_and_exits_0_without_require",
    "test_mix_command_with_a_preset_end_to_end", "test_one_and_two_threads_give_the_same_bytes",
    "test_orientation_variants_let_the_attack_undo_flipped_blocks",
    "test_output_is_identical_with_one_and_two_threads",
    "test_paper_mode_verifies_with_and_without_the_key",
    "test_plain_run_over_a_pending_run_is_refused_and_resume_finishes",
    "test_plugin_filtered_store_mixes_verifies_and_is_described",
    "test_preview_writes_the_format_its_extension_names",
    "test_require_good_on_a_weak_store_exits_3_and_keeps_the_output",
    "test_require_moderate_on_a_well_protected_store_exits_0",
    "test_resume_through_the_cli_uses_the_recorded_spec_and_window",
    "test_termination_removes_the_temporary_output",
})
#: Tests parametrized over the cuda backend run in numba.cuda's simulator: slow on a CPU.
_CUDA_CASE = re.compile(r"[\[-]cuda[\]-]")


def pytest_collection_modifyitems(items):
    for item in items:
        if (item.path.stem in SLOW_MODULES or item.originalname in SLOW_TESTS
                or _CUDA_CASE.search(item.name)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def key():
    return fastmix.Key.from_hex("0f" * 32)


@pytest.fixture(scope="session")
def photo_tiles():
    """Real photographs (scikit-image samples) cut into 32x32 RGB tiles, labelled by photo."""
    pytest.importorskip("skimage.data")
    from fastmix.samples import photo_tiles as tiles

    return tiles()
