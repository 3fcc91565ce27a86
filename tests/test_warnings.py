"""sampler_warnings and gpu_run_warnings, on backend reports and timelines built here."""

from __future__ import annotations

import pandas as pd

from benchrunner.analysis.warnings import gpu_run_warnings, sampler_warnings

IDLE, APP_CLOCKS, SW_POWER_CAP, HW_SLOWDOWN, SW_THERMAL = 0x001, 0x002, 0x004, 0x008, 0x020


def timeline(rows: list[tuple]) -> pd.DataFrame:
    """Rows (case_id, repeat, t_ms, metric, value), as timeline.csv holds them."""
    return pd.DataFrame(rows, columns=["case_id", "repeat", "t_ms", "metric", "value"])


def clock_rows(case_id: str, clocks_mhz: list[float], repeat: int | None = 0) -> list[tuple]:
    return [(case_id, repeat, 100.0 * i, "sm_clock_mhz", c) for i, c in enumerate(clocks_mhz)]


def throttle_rows(case_id: str, masks: list[int], repeat: int | None = 0) -> list[tuple]:
    return [(case_id, repeat, 100.0 * i + 50, "throttle_reasons", float(m)) for i, m in enumerate(masks)]


def codes(found) -> list[str]:
    return [w.code for w in found]


# --- sampler_warnings -------------------------------------------------------------------


def test_a_clean_gpu_run_and_a_plain_cpu_run_warn_of_nothing():
    assert sampler_warnings([], [], "gpm_sm", None) == []
    assert sampler_warnings([], [], "cpu", None) == []


def test_a_source_change_mid_run_names_the_sample_the_new_source_and_why():
    found = sampler_warnings(["gpm: nvmlGpmSampleGet failed: GpuIsLost; util_pct is utilization.gpu from read 7 on"],
                             [(7, "nvml_gpu", "nvmlGpmSampleGet failed: GpuIsLost")], "nvml_gpu", None)
    assert codes(found) == ["util_source_change"]  # the gpm: error is that same change, not a second warning
    (warning,) = found
    assert "sample 7" in warning.message and "nvml_gpu" in warning.message and "GpuIsLost" in warning.message
    assert "util_source" in warning.fix


def test_failed_nvml_queries_are_listed_once_each_with_their_fix():
    errors = ["power_w: NotSupported", "temp_c: Unknown", "power_w: NotSupported", "throttle_reasons: NoPermission",
              "processes: Unknown", "device: CUDA_DEVICE_ORDER is unset (FASTEST_FIRST), so ..."]
    (warning,) = sampler_warnings(errors, [], "nvml_gpu", None)
    assert warning.code == "nvml_query_failed"
    assert warning.message.startswith("4 kind(s) of NVML query failed")  # repeats and device notes left out
    assert "power_w: NotSupported" in warning.message and "and 1 more" in warning.message
    assert "blank, not zero" in warning.message
    assert "nvidia-ml-py" in warning.fix


def test_cpu_fallback_says_why_utilisation_is_the_cpus():
    reason = "NVML unavailable (nvmlInit failed: LibraryNotFound); utilisation is the CPU's"
    (warning,) = sampler_warnings([], [], "cpu", reason)
    assert warning.code == "util_on_cpu"
    assert "LibraryNotFound" in warning.message
    assert "nvidia-ml-py" in warning.fix


def test_all_three_at_once_in_a_fixed_order():
    found = sampler_warnings(["mem_used_bytes: Unknown"], [(3, "nvml_gpu", "GPM SM_UTIL returned Unknown")],
                             "cpu", "NVML unavailable")
    assert codes(found) == ["util_source_change", "nvml_query_failed", "util_on_cpu"]
    assert all(w.fix for w in found)


# --- gpu_run_warnings -------------------------------------------------------------------


def test_an_empty_or_clean_timeline_warns_of_nothing():
    assert gpu_run_warnings(timeline([])) == []
    rows = clock_rows("a", [1980, 1980, 1965, 1980]) + throttle_rows("a", [0, 0, 0])
    assert gpu_run_warnings(timeline(rows)) == []


def test_benign_reasons_idle_and_application_clocks_do_not_warn():
    rows = throttle_rows("a", [IDLE, APP_CLOCKS, IDLE | APP_CLOCKS])
    assert gpu_run_warnings(timeline(rows)) == []


def test_harmful_throttle_reasons_are_decoded_and_counted():
    rows = throttle_rows("a", [0, SW_POWER_CAP, SW_POWER_CAP | IDLE]) + throttle_rows("b", [HW_SLOWDOWN | SW_THERMAL])
    (warning,) = gpu_run_warnings(timeline(rows))
    assert warning.code == "gpu_throttle"
    assert "hw_slowdown, sw_power_cap, sw_thermal" in warning.message  # decoded names, idle left out
    assert "3 of 4 samples" in warning.message and "2 case(s)" in warning.message
    assert "nvidia-smi" in warning.fix


def test_unknown_throttle_bits_are_named_not_dropped():
    (warning,) = gpu_run_warnings(timeline(throttle_rows("a", [0x1000])))
    assert "unknown_0x1000" in warning.message


def test_sm_clock_spread_over_ten_percent_in_a_case_warns_with_the_worst_case():
    rows = clock_rows("steady", [1980, 1975, 1980]) + clock_rows("mild", [1980, 1800, 1980]) \
        + clock_rows("hot", [1980, 1410, 1700])
    (warning,) = gpu_run_warnings(timeline(rows))
    assert warning.code == "clock_change"
    assert "during 1 case(s)" in warning.message  # mild: 180/1980 = 9.1%, under the limit
    assert "hot" in warning.message and "1410-1980 MHz" in warning.message
    assert "nvidia-smi -lgc" in warning.fix


def test_readings_outside_repeats_do_not_count():
    """Between repeats and in warm-up the GPU idles and drops its clock on purpose."""
    rows = clock_rows("a", [1980, 1980]) + clock_rows("a", [345, 1980], repeat=None) \
        + throttle_rows("a", [SW_THERMAL], repeat=None)
    assert gpu_run_warnings(timeline(rows)) == []


def test_a_timeline_read_back_from_csv_works(tmp_path):
    """timeline.csv leaves repeat blank outside repeats; read back, that is NaN."""
    rows = clock_rows("a", [1980, 1500]) + clock_rows("a", [300], repeat=None) + throttle_rows("a", [SW_POWER_CAP])
    path = tmp_path / "timeline.csv"
    timeline(rows).to_csv(path, index=False)
    assert codes(gpu_run_warnings(pd.read_csv(path))) == ["gpu_throttle", "clock_change"]
