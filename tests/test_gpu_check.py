"""benchmarks/gpu_check.py: its CPU dry run covers every section, and a wrong result cannot pass.

The script itself checks CUDA; without a GPU its ``--dry-run`` runs every section's code on the CPU with tiny
sizes, so the script cannot rot while no GPU is at hand.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def quiet_context(module, tmp_path, budget_s: float = 60.0):
    report = module.Report(echo=False)
    return module.Context(module.dry_plan(), torch.device("cpu"), report, module.Timebox(budget_s), tmp_path)


def test_dry_run_reports_every_section_passed_or_skipped_with_a_reason(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "RECONET_DATA": str(tmp_path / "data"), "RECONET_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--json", str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert result["failed"] == 0 and result["meta"]["dry_run"] is True
    from_table = {line.split()[0] for line in done.stdout.splitlines() if line.split()}
    for section in ("hardware", "correctness", "inference", "video", "training", "torchrun", "raft", "compile"):
        mine = [row for row in rows if row["section"] == section]
        assert mine, f"no row for section {section}"
        assert section in from_table
        for row in mine:
            assert row["status"] in ("passed", "measured", "skipped"), row
            if row["status"] == "skipped":
                assert len(row["note"]) > 10, row  # skipped with the reason
    # the CUDA paths the issue names each have a correctness row (a test of tests/test_cuda.py, run against the CPU
    # here) that passed
    names = " | ".join(row["name"] for row in rows if row["status"] == "passed")
    for path in ("forward_on_the_device_matches_the_cpu[fp16]", "forward_on_the_device_matches_the_cpu[bf16]",
                 "optimize_for_inference_on_the_device_matches_the_cpu[fp16]",
                 "optimize_for_inference_on_the_device_matches_the_cpu[bf16]", "warp_and_its_valid_mask",
                 "every_loss_term_on_the_device_matches_the_cpu[fp16]",
                 "every_loss_term_on_the_device_matches_the_cpu[bf16]",
                 "one_training_step_on_the_device_matches_the_cpu[fp16+GradScaler]",
                 "one_training_step_on_the_device_matches_the_cpu[bf16]", "torchrun"):
        assert path in names
    training = [row for row in rows if row["section"] == "training"]
    assert all("needs CUDA" in row["note"] for row in training)  # peak GPU memory: skipped, with the reason


def test_a_result_outside_its_tolerance_is_a_failed_row_and_a_nonzero_exit(gpu_check, tmp_path):
    ref = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    report = gpu_check.Report(echo=False)
    tol = gpu_check.IMAGE_TOL["fp16"]
    report.compare("correctness", "close", ref + 1e-4, ref, tol)
    assert report.exit_status() == 0 and report.rows[-1].status == "passed"
    wrong = ref.clone()
    wrong[0, 0, 0, 0] += 0.5  # one bad pixel breaks the max
    report.compare("correctness", "one bad pixel", wrong, ref, tol)
    assert report.rows[-1].status == "FAILED" and "max_abs" in report.rows[-1].note
    report.compare("correctness", "non-finite", torch.full_like(ref, float("nan")), ref, tol)
    assert report.rows[-1].status == "FAILED"
    report.compare_terms("correctness", "loss terms", {"style": 1.1, "tv": 2.0}, {"style": 1.0, "tv": 2.0},
                         gpu_check.LOSS_TOL["bf16"])
    assert report.rows[-1].status == "FAILED" and "style" in report.rows[-1].note
    assert report.exit_status() == 1
    assert "FAILED" in report.table()


def test_an_exception_in_one_section_is_a_failed_row_and_the_next_section_runs(gpu_check, tmp_path):
    ctx = quiet_context(gpu_check, tmp_path)

    def broken(ctx, box):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def fine(ctx, box):
        ctx.report.add("video", "something", gpu_check.MEASURED, fps=1.0)

    gpu_check.run_sections(ctx, ["inference", "video"], {"inference": broken, "video": fine})
    assert [(r.section, r.status) for r in ctx.report.rows] == [("inference", "FAILED"), ("video", "measured")]
    assert "illegal memory access" in ctx.report.rows[0].note
    assert ctx.report.exit_status() == 1


def test_sections_after_the_global_budget_are_skipped_with_the_reason(gpu_check, tmp_path):
    ctx = quiet_context(gpu_check, tmp_path, budget_s=0.0)
    ran = []
    gpu_check.run_sections(ctx, ["training", "raft"], {"training": lambda c, b: ran.append(1),
                                                       "raft": lambda c, b: ran.append(2)})
    assert not ran
    assert [r.status for r in ctx.report.rows] == ["skipped", "skipped"]
    assert all("budget" in r.note for r in ctx.report.rows)


def test_help_says_what_it_measures_and_how_long_it_takes(gpu_check, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--help"])
    text = capsys.readouterr().out
    for word in ("minutes", "--dry-run", "correctness", "frames/s", "steps/s", "torchrun", "RAFT", "TFLOP/s"):
        assert word in text


def test_video_section_without_its_io_packages_names_them_and_the_check_goes_on(gpu_check, tmp_path, monkeypatch):
    # PyAV is the library's one video stack (a declared dependency); on a GPU machine without it the video section
    # says which package is missing, and the other sections still run (the report does not stop at it).
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    ctx = quiet_context(gpu_check, tmp_path)
    gpu_check.run_sections(ctx, ["video"])
    rows = ctx.report.rows
    assert rows and rows[0].status == "skipped" and "av" in rows[0].note  # the MP4 pipeline names what is missing
    # the frames-in-memory run after it is measured where the frame writer's modules were loaded before, else it
    # fails in its own row: either way the check reports and goes on
    assert all(r.status in ("skipped", "FAILED", "measured") for r in rows[1:])


def test_raft_section_compares_and_times_when_weights_are_present(gpu_check, tmp_path, monkeypatch):
    from torchvision.models.optical_flow import raft_large

    weights = tmp_path / "raft_large_random.pth"  # random weights: this checks the code path, not the flow
    torch.save(raft_large(weights=None).state_dict(), weights)
    monkeypatch.setenv("RECONET_RAFT_WEIGHTS", str(weights))
    ctx = quiet_context(gpu_check, tmp_path)
    gpu_check.run_sections(ctx, ["raft"])
    statuses = {row.name: row.status for row in ctx.report.rows}
    assert statuses["RAFT large on the CPU 128x128"] == "measured"
    assert statuses["RAFT large on the GPU"] == "skipped"  # CUDA only


def test_the_correctness_section_reports_a_failing_cuda_test_as_a_failed_row(gpu_check, tmp_path):
    xml = tmp_path / "report.xml"
    xml.write_text('<testsuites><testsuite name="pytest"><testcase classname="tests.test_cuda" name="test_a[fp16]" '
                   'time="0.5"/><testcase classname="tests.test_cuda" name="test_b[bf16]" time="1.0"><failure '
                   'message="AssertionError: tolerance max_abs &lt;= 0.12">trace</failure></testcase><testcase '
                   'name="test_c" time="0"><skipped message="needs CUDA (a GPU)"/></testcase></testsuite></testsuites>')
    assert gpu_check.junit_rows(xml) == [("test_a[fp16]", "passed", "", 0.5),
                                        ("test_b[bf16]", "FAILED", "AssertionError: tolerance max_abs <= 0.12", 1.0),
                                        ("test_c", "skipped", "needs CUDA (a GPU)", 0.0)]


def test_the_timed_training_step_is_the_library_train_step(gpu_check, tmp_path, monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["autocast_dtype"])
        return real(*args, **kwargs)

    real = gpu_check.train_step
    monkeypatch.setattr(gpu_check, "train_step", spy)
    ctx = quiet_context(gpu_check, tmp_path)
    gpu_check.run_sections(ctx, ["training"])
    assert [r.status for r in ctx.report.rows] == ["measured", "measured"]
    assert set(calls) == {torch.bfloat16, torch.float16}  # both timed precisions ran the library's step


def test_the_correctness_section_without_pytest_is_skipped_with_the_reason(gpu_check, tmp_path, monkeypatch):
    real = gpu_check.importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a))
    ctx = quiet_context(gpu_check, tmp_path)
    gpu_check.run_sections(ctx, ["correctness"])
    assert [(r.status, "pytest" in r.note) for r in ctx.report.rows] == [("skipped", True)]
