"""Backends and precisions as variants: accuracy against a reference variant, sizes and
set-up cost, ONNX Runtime against eager, and stages a backend cannot take."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from benchrunner.backends.apply import UnsupportedStageError, apply_variant
from benchrunner.analysis.compare import VariantCase, best_variant, best_variant_line
from benchrunner.suite import VariantSpec, missing_package
from benchrunner.notify.from_run import digest_input
from benchrunner.pipeline import Stream
from benchrunner.run.quality import accuracy_columns, stream_accuracy
from benchrunner.report.sections import build_model
from testing_pipelines import variants as variant_pipeline

needs_onnx = pytest.mark.skipif(missing_package("onnxruntime") is not None,
                                reason=str(missing_package("onnxruntime")))


def run_stages(pipeline, clip: dict) -> dict:
    value = clip
    with torch.inference_mode():
        for stage in pipeline.stages:
            value = stage.fn(value)
    return value


# -- the accuracy figures ------------------------------------------------------------------

def test_output_against_itself_has_infinite_snr_and_full_argmax_agreement():
    pipeline = variant_pipeline()
    output = run_stages(pipeline, pipeline.make_clip(2.0, 0))
    found = {s.stream: s for s in stream_accuracy(output, {k: v.clone() for k, v in output.items()},
                                                  pipeline.outputs)}
    assert math.isinf(found["audio"].snr_db) and found["audio"].snr_db > 0
    assert found["audio"].max_abs_err == 0.0 and found["audio"].argmax_agree_pct is None  # not categorical
    assert found["scores"].argmax_agree_pct == 100.0
    columns = accuracy_columns(list(found.values()), "fp32")
    assert math.isinf(columns["accuracy_snr_db"]) and columns["accuracy_argmax_agree_pct"] == 100.0
    assert json.loads(columns["accuracy_streams"])["audio"]["snr_db"] == "inf"


def test_a_known_perturbation_gives_the_expected_errors():
    reference = {"x": torch.tensor([[1.0, -2.0, 3.0, 4.0]]),
                 "logits": torch.tensor([[[0.0, 1.0], [2.0, 1.0], [0.0, 5.0], [1.0, 0.9]]])}
    output = {"x": reference["x"] + torch.tensor([[0.1, 0.0, -0.2, 0.0]]),
              "logits": reference["logits"] + torch.tensor([[[0.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.2]]])}
    streams = {"x": Stream(time_axis=-1), "logits": Stream(time_axis=1, categorical=True, class_axis=-1)}
    found = {s.stream: s for s in stream_accuracy(reference, output, streams)}
    assert found["x"].snr_db == pytest.approx(10 * math.log10(30 / 0.05))
    assert found["x"].max_abs_err == pytest.approx(0.2) and found["x"].mean_abs_err == pytest.approx(0.075)
    assert found["logits"].argmax_agree_pct == pytest.approx(50.0)  # frames 1 and 3 flip, 0 and 2 stay
    with pytest.raises(ValueError, match="stream 'x'"):
        stream_accuracy(reference, {"x": output["x"][:, :3], "logits": output["logits"]}, streams)


# -- backends ------------------------------------------------------------------------------

@needs_onnx
def test_onnxruntime_returns_the_eager_outputs_on_the_reference_pipeline(tmp_path):
    from benchrunner.pipelines.reference import build

    eager = build("tiny")
    ort, report = apply_variant(build("tiny"), VariantSpec(backend="onnxruntime"), build_dir=tmp_path)
    assert report["unsupported"] == [] and all("onnxruntime" in s["runs_as"] for s in report["stages"])
    assert report["file_bytes"] == sum(p.stat().st_size for p in tmp_path.glob("*.onnx"))
    assert report["setup_ms"] >= sum(s["build_ms"]["export"] for s in report["stages"])
    for clip_s in (2.3, 5.0):  # neither is the example length it was exported with
        clip = eager.make_clip(clip_s, 1)
        expected, got = run_stages(eager, clip), run_stages(ort, clip)
        assert set(got) == set(expected) == {"audio", "frames", "visemes"}
        for name in expected:
            scale = float(expected[name].abs().max())
            assert float((got[name] - expected[name]).abs().max()) <= 1e-4 * scale, name
    batch = {k: torch.cat([v, v]) for k, v in eager.make_clip(3.1, 2).items()}  # batched chunks
    assert run_stages(ort, batch)["audio"].shape == (2, 3.1 * 8000)


@needs_onnx
def test_onnxruntime_int8_is_smaller_and_close(tmp_path):
    eager = variant_pipeline()
    int8, report = apply_variant(variant_pipeline(), VariantSpec(backend="onnxruntime", quantize="int8-dynamic"),
                                 build_dir=tmp_path)
    fp32_bytes = sum(p.numel() * 4 for p in eager.stages[0].module.parameters())
    score = report["stages"][0]
    assert score["files"] == ["score.int8.onnx"] and "quantize" in score["build_ms"]
    assert score["param_bytes"] < fp32_bytes  # the Linear's weights are int8
    clip = eager.make_clip(1.0, 3)
    found = {s.stream: s for s in stream_accuracy(run_stages(eager, clip), run_stages(int8, clip), eager.outputs)}
    assert found["audio"].snr_db > 20 and found["scores"].argmax_agree_pct > 80


def test_torch_dynamic_int8_and_bf16_change_the_weights_and_stay_close(tmp_path):
    eager = variant_pipeline()
    clip = eager.make_clip(1.0, 4)
    expected = run_stages(eager, clip)
    for spec, dtype_bytes in ((VariantSpec(quantize="int8-dynamic"), None), (VariantSpec(precision="bf16"), 2)):
        pipeline, report = apply_variant(variant_pipeline(), spec, build_dir=tmp_path)
        got = run_stages(pipeline, clip)
        worst = min(s.snr_db for s in stream_accuracy(expected, got, eager.outputs))
        assert 20 < worst < math.inf, spec  # int8: the Linear's scores change (the conv stays fp32)
        if dtype_bytes:
            assert report["param_bytes"] == sum(p.numel() * dtype_bytes for p in eager.stages[0].module.parameters())


def test_a_stage_without_module_follows_on_unsupported(tmp_path):
    clip = variant_pipeline().make_clip(1.0, 0)
    expected = run_stages(variant_pipeline(module_stage=False), clip)
    runs, report = apply_variant(variant_pipeline(module_stage=False), VariantSpec(precision="bf16"),
                                 build_dir=tmp_path)
    assert report["stages"][0]["runs_as"] == "eager (as written)"
    assert report["unsupported"] == ["score: no module: the stage gives only fn "
                                     "(name it: Stage(name, module=..., call=ModuleCall(...)))",
                                     "offset: no module: the stage gives only fn "
                                     "(name it: Stage(name, module=..., call=ModuleCall(...)))"]
    assert torch.equal(run_stages(runs, clip)["audio"], expected["audio"])  # ran as written, fp32
    fails, report = apply_variant(variant_pipeline(module_stage=False),
                                  VariantSpec(precision="bf16", on_unsupported="fail"), build_dir=tmp_path)
    assert report["first_call_error"].startswith("UnsupportedStageError: stage score: eager bf16: no module")
    with pytest.raises(UnsupportedStageError, match="^stage score: eager bf16: no module"):
        run_stages(fails, clip)


def test_compile_backend_matches_eager(tmp_path):
    eager = variant_pipeline()
    compiled, report = apply_variant(variant_pipeline(), VariantSpec(backend="compile"), build_dir=tmp_path)
    assert report["stages"][0]["runs_as"] == "compile" and report["first_call_ms"] > 0
    clip = eager.make_clip(1.3, 5)
    expected, got = run_stages(eager, clip), run_stages(compiled, clip)
    assert float((got["audio"] - expected["audio"]).abs().max()) < 1e-5


@pytest.mark.skipif(missing_package("openvino") is not None, reason=str(missing_package("openvino")))
def test_openvino_returns_the_eager_outputs(tmp_path):
    eager = variant_pipeline()
    ov, report = apply_variant(variant_pipeline(), VariantSpec(backend="openvino"), build_dir=tmp_path)
    assert report["stages"][0]["runs_as"] == "openvino"
    clip = eager.make_clip(1.7, 6)
    expected, got = run_stages(eager, clip), run_stages(ov, clip)
    assert float((got["audio"] - expected["audio"]).abs().max()) <= 1e-4 * float(expected["audio"].abs().max())


# -- a run with variants ---------------------------------------------------------------------

VARIANTS_SUITE = """
name = "variants"
pipeline = "testing_pipelines:variants"
device = "cpu"
clip_lengths_s = [2]
modes = ["single", "chunked"]
chunk = {{ window_s = 1, overlap_s = 0.25 }}
repeats = 2
warmup = 1
sampler = {{ enabled = false }}
reference_variant = "fp32"
accuracy = {{ min_snr_db = 30 }}

[variants]
fp32 = {{}}
again = {{ offset = 0.0 }}
perturbed = {{ offset = 0.01 }}
{extra}
"""


def test_a_run_fills_accuracy_sizes_and_setup_and_fails_unsupported_stages(write_suite, bench, tmp_path):
    extra = ('bf16-strict = { precision = "bf16", on_unsupported = "fail" }\n'
             + ('onnxruntime = { backend = "onnxruntime" }\n' if missing_package("onnxruntime") is None else ""))
    suite = write_suite(VARIANTS_SUITE.format(extra=extra))
    result = bench("run", str(suite), "--out", str(tmp_path / "results"), "--run-id", "r")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "results" / "r"
    summary = pd.read_csv(run_dir / "summary.csv")
    totals = summary[summary["stage"] == "total"].set_index("case_id")
    for case in ("fp32/single/2s", "fp32/chunked/2s", "again/single/2s", "again/chunked/2s"):
        assert math.isinf(totals.loc[case, "accuracy_snr_db"]) and totals.loc[case, "accuracy_max_abs_err"] == 0
        assert totals.loc[case, "accuracy_argmax_agree_pct"] == 100.0
        assert totals.loc[case, "accuracy_reference"] == "fp32"
    for mode in ("single", "chunked"):
        row = totals.loc[f"perturbed/{mode}/2s"]
        assert row["accuracy_max_abs_err"] == pytest.approx(0.01, rel=1e-3)
        assert row["accuracy_mean_abs_err"] == pytest.approx(0.01, rel=1e-3)
        assert row["accuracy_argmax_agree_pct"] == 100.0  # the same offset on every class keeps the argmax
    strict = summary[(summary["variant"] == "bf16-strict")]
    assert (strict["n"] == 0).all()  # every repeat failed
    samples = pd.read_csv(run_dir / "samples.csv")
    errors = set(samples[(samples["variant"] == "bf16-strict") & (samples["stage"] == "total")]["error"])
    assert errors and all("stage offset: eager bf16: no module: the stage gives only fn" in e for e in errors)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["variants"]) >= {"fp32", "again", "perturbed", "bf16-strict"}
    fp32 = manifest["variants"]["fp32"]
    assert fp32["param_bytes"] == totals.loc["fp32/single/2s", "variant_param_bytes"] > 0
    assert fp32["first_call_ms"] > 0 and fp32["setup_ms"] >= fp32["first_call_ms"]
    assert not (run_dir / "accuracy_reference").exists()  # the reference outputs go when the run is done
    if missing_package("onnxruntime") is None:
        for mode in ("single", "chunked"):
            row = totals.loc[f"onnxruntime/{mode}/2s"]
            assert row["failures"] == 0 and row["accuracy_snr_db"] > 100
            assert row["variant_file_bytes"] == (run_dir / "build" / "onnxruntime" / "score.onnx").stat().st_size
            assert row["variant_setup_ms"] > 0 and row["variant_backend"] == "onnxruntime"
        compared = bench("compare", "fp32", "onnxruntime", "--run", str(run_dir))
        assert compared.returncode == 0, compared.stderr
        assert "onnxruntime" in compared.stdout
    model = build_model(run_dir)
    section = model.section("variants")
    best_line, excluded = section.paragraphs[0], section.paragraphs[1]
    assert best_line.startswith("Best variant within SNR >= 30 dB of fp32: ")
    assert "bf16-strict (4 failed repeat(s))" in excluded
    table = section.blocks[0]
    assert len(table.rows) == len(totals) and table.columns[5] == "Speed-up (95% CI)"
    assert digest_input(run_dir, []).variants_line == best_line


def case(variant, speedup, snr_db=math.inf, failures=0, clip_s=5.0):
    return VariantCase(variant=variant, mode="single", clip_s=clip_s, n=5, failures=failures, n_total=5,
                       latency_p50_ms=100 / speedup, speedup=speedup, speedup_ci=None, peak_mem_bytes=None,
                       param_bytes=None, file_bytes=None, setup_ms=None, snr_db=snr_db, max_abs_err=None,
                       argmax_agree_pct=None, backend="eager")


def test_the_best_variant_is_the_fastest_within_the_accuracy_bound():
    cases = [case("fp32", 1.0), case("fp32", 1.0, clip_s=30),
             case("int8", 3.0, snr_db=25.0), case("int8", 3.0, clip_s=30),         # fastest, too inaccurate
             case("ort", 1.5, snr_db=80.0), case("ort", 2.0, snr_db=70.0, clip_s=30),
             case("bf16", 1.8, snr_db=45.0), case("bf16", 1.8, snr_db=44.0, clip_s=30, failures=1)]
    best = best_variant(cases, min_snr_db=30, max_abs_err=None)
    assert best.variant == "ort" and best.geomean_speedup == pytest.approx(math.sqrt(3.0))
    assert best.excluded == {"int8": "SNR 25.0 dB < 30 dB", "bf16": "1 failed repeat(s)"}
    assert best_variant(cases, min_snr_db=None, max_abs_err=None).variant == "int8"
    assert best_variant_line(best, "fp32", 30, None) == ("Best variant within SNR >= 30 dB of fp32: ort, 1.73x the "
                                                         "reference's speed (geometric mean over its cases), worst "
                                                         "SNR 70.0 dB.")


@pytest.mark.gpu
@needs_onnx
def test_onnxruntime_on_cuda_binds_device_tensors(tmp_path):
    """Needs a GPU and onnxruntime-gpu: the CUDA provider, inputs and outputs on the device."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    from benchrunner.pipelines.reference import build

    eager = build("tiny", device="cuda")
    ort, report = apply_variant(build("tiny", device="cuda"), VariantSpec(backend="onnxruntime"), build_dir=tmp_path)
    assert all("CUDAExecutionProvider" in s["runs_as"] or "Tensorrt" in s["runs_as"] for s in report["stages"])
    clip = {k: v.cuda() for k, v in eager.make_clip(2.3, 1).items()}
    expected, got = run_stages(eager, clip), run_stages(ort, clip)
    for name in expected:
        assert got[name].device.type == "cuda"
        assert float((got[name] - expected[name]).abs().max()) <= 1e-3 * float(expected[name].abs().max())
