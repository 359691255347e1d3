"""Every CUDA path against the CPU float32 result on the same input (marked ``cuda``: skipped without a GPU).

The paper model at 94x158, batch 2 (an odd size, so padding and cropping run): the network forward in fp32 (TF32),
fp16 and bf16 autocast; ``optimize_for_inference`` in fp16 and bf16; ``warp`` (float32 and a float16 image) and
its valid mask; every loss term of ``pair_losses`` in fp32, fp16 and bf16; one training step
(:func:`reconet_lib.train.train_step`, the loop's own step) in fp32, bf16 and fp16 with a gradient scaler: the loss
before and after one Adam update. The tolerances and the seeded inputs are the GPU check's
(``benchmarks/gpu_check.py``), whose ``correctness`` section runs this file and reports one row per test.

``RECONET_CUDA_DEVICE`` picks the device (default ``cuda``). ``RECONET_CUDA_TESTS_ON_CPU=1`` runs the same tests
against the CPU with the tiny preset, tiny sizes and a loss network cut after relu2_2 (the GPU check's dry run),
so that this file cannot rot while no GPU is at hand; the comparisons then mean only that the code runs.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from reconet_lib import losses
from reconet_lib.inference import optimize_for_inference
from reconet_lib.precision import autocast
from reconet_lib.train import PairLoss, train_step
from reconet_lib.warp import warp

pytestmark = pytest.mark.cuda

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
ON_CPU_ENV = "RECONET_CUDA_TESTS_ON_CPU"
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="module")
def check():
    """benchmarks/gpu_check.py as a module: the one home of the tolerances and the seeded inputs."""
    spec = importlib.util.spec_from_file_location("gpu_check_for_tests", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def plan(check):
    return check.dry_plan() if os.environ.get(ON_CPU_ENV) == "1" else check.gpu_plan()


@pytest.fixture(scope="module")
def device(plan):
    return torch.device("cpu") if plan.dry_run else torch.device(os.environ.get("RECONET_CUDA_DEVICE", "cuda"))


@pytest.fixture(scope="module")
def inputs(check, plan):
    """``(model, vgg, grams, weights, batch)`` on the CPU: random weights, seeded inputs."""
    h, w = plan.check_size
    model = check.seeded_model(plan.preset).eval()
    weights = check.loss_weights(plan)
    vgg = losses.VGGFeatures(None, layers=weights.vgg_layers, seed=0)
    grams = losses.style_grams(vgg, check.sample_images(1, 64, 64, seed=4), list(weights.style_layer_weights))
    return model, vgg, grams, weights, check.sample_pair(2, h, w, seed=3)


def assert_within(check, out, ref, tol) -> None:
    diffs = check.differences(out, ref)
    assert check.exceeded(diffs, tol) == [], f"{tol.describe()}; measured {diffs}"


@pytest.mark.parametrize("key", list(PRECISIONS))
def test_forward_on_the_device_matches_the_cpu(check, plan, device, inputs, key):
    model = inputs[0]
    x = check.sample_images(2, *plan.check_size, seed=1)
    with torch.no_grad():
        ref = model(x)
        with autocast(device, PRECISIONS[key]):
            out = copy.deepcopy(model).to(device)(x.to(device))
    assert_within(check, out.float(), ref, check.IMAGE_TOL[key])


@pytest.mark.parametrize("key", ["fp16", "bf16"])
def test_optimize_for_inference_on_the_device_matches_the_cpu(check, plan, device, inputs, key):
    model = inputs[0]
    x = check.sample_images(2, *plan.check_size, seed=1)
    with torch.no_grad():
        ref = model(x)
        out = optimize_for_inference(model, device, dtype=PRECISIONS[key])(x.to(device))
    assert_within(check, out, ref, check.IMAGE_TOL[key])


def test_warp_and_its_valid_mask_on_the_device_match_the_cpu(check, plan, device):
    h, w = plan.check_size
    generator = torch.Generator().manual_seed(2)
    image = check.sample_images(2, h, w, seed=2)
    flow = (torch.rand(2, 2, h, w, generator=generator) - 0.5) * max(h, w) * 0.4  # some samples leave the frame
    flow[0, :, 0, 0] = float("nan")  # unknown flow: zeros, invalid
    ref, ref_valid = warp(image, flow, return_valid=True)
    out, valid = warp(image.to(device), flow.to(device), return_valid=True)
    assert_within(check, out, ref, check.WARP_TOL)
    assert_within(check, valid, ref_valid, check.MASK_TOL)
    half = warp(image.to(device).half(), flow.to(device)).float()
    assert_within(check, half, warp(image.half().float(), flow), check.WARP_HALF_TOL)


def loss_values(terms: dict) -> dict:
    keys = [f"{term}_raw" for term in losses.LOSS_TERMS] + ["total"]
    return {key: float(terms[key].detach()) for key in keys}


def assert_terms_within(check, out: dict, ref: dict, tol) -> None:
    rel = {key: check.differences(out[key], ref[key])["rel"] for key in ref}
    assert all(value <= tol.rel for value in rel.values()), f"{tol.describe()}; relative differences {rel}"


@pytest.mark.parametrize("key", list(PRECISIONS))
def test_every_loss_term_on_the_device_matches_the_cpu(check, device, inputs, key):
    model, vgg, grams, weights, batch = inputs
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        ref = loss_values(losses.pair_losses(model, vgg, batch, grams, weights))
        grams_d = {k: v.to(device) for k, v in grams.items()}
        batch_d = check.to_device(batch, device)
        with autocast(device, PRECISIONS[key]):
            out = loss_values(losses.pair_losses(copy.deepcopy(model).to(device), copy.deepcopy(vgg).to(device),
                                                 batch_d, grams_d, weights))
    assert_terms_within(check, out, ref, check.LOSS_TOL[key])


def one_step_losses(check, inputs, device, dtype, use_scaler: bool, max_tries: int = 40) -> tuple[float, float, int]:
    """Loss before and after one :func:`train_step` (Adam, lr 1e-3): ``(before, after, skipped)``.

    With a gradient scaler, steps that overflow are skipped by the scaler (the scale halves); they are repeated
    from the same state until one is taken, and counted.
    """
    model, vgg, grams, weights, batch = inputs
    model = copy.deepcopy(model).to(device).train()
    runner = PairLoss(model, copy.deepcopy(vgg).to(device), {k: v.to(device) for k, v in grams.items()}, weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    for skipped in range(max_tries):
        scale = scaler.get_scale() if use_scaler else None
        result = train_step(runner, optimizer, scaler, batch, device=device, autocast_dtype=dtype)
        if not use_scaler or scaler.get_scale() >= scale:
            break
    else:
        raise AssertionError(f"the gradient scaler skipped {max_tries} steps in a row (overflow every time)")
    batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    with torch.no_grad(), autocast(device, dtype):
        after = float(runner(batch)["total"])
    return result.terms["total"], after, skipped


@pytest.mark.parametrize("key, use_scaler", [("fp32", False), ("bf16", False), ("fp16", True)],
                         ids=["fp32", "bf16", "fp16+GradScaler"])
def test_one_training_step_on_the_device_matches_the_cpu(check, device, inputs, key, use_scaler):
    ref_before, ref_after, _ = one_step_losses(check, inputs, torch.device("cpu"), None, False)
    before, after, _ = one_step_losses(check, inputs, device, PRECISIONS[key], use_scaler)
    assert_terms_within(check, {"before": before, "after": after}, {"before": ref_before, "after": ref_after},
                        check.STEP_TOL[key])
