"""Pair datasets and pair transforms: directions, mask polarities, geometry and caching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reconet_lib import data, synthetic
from reconet_lib.data import (
    DatasetNotFoundError,
    FlyingChairs2Pairs,
    MixedPairs,
    PairAugment,
    SceneFlowPairs,
    SintelPairs,
    SyntheticPairs,
    hflip_pair,
    make_sample,
    random_crop_pair,
    resize_pair,
)
from reconet_lib.errors import UserInputError
from reconet_lib.flow import read_flo, write_flo, write_flow
from reconet_lib.warp import inside_mask, warp, warp_by_gather

H, W = 40, 48
CONFIG = synthetic.SyntheticConfig(height=H, width=W, frames=4, objects=2, seed=3)


# ----------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sequence():
    return synthetic.make_sequence(CONFIG)


@pytest.fixture(scope="module")
def sintel_root(tmp_path_factory):
    return synthetic.generate_dataset(tmp_path_factory.mktemp("sintel") / "training", scenes=1, config=CONFIG)


def warp_error(sample, flow=None) -> float:
    """Mean absolute difference between current and warp(previous, flow) over valid pixels and channels."""
    flow = sample["flow"] if flow is None else flow
    valid = sample["valid"][None]
    diff = (warp(sample["previous"][None], flow[None]) - sample["current"][None]).abs() * valid
    return float(diff.sum() / (3 * valid.sum()))


def assert_pair_sample(sample, size):
    h, w = size
    assert set(data.PAIR_KEYS) <= set(sample)
    for key, channels in (("current", 3), ("previous", 3), ("flow", 2), ("valid", 1)):
        assert sample[key].shape == (channels, h, w), key
        assert sample[key].dtype == torch.float32, key
    assert 0 <= float(sample["current"].min()) and float(sample["current"].max()) <= 1
    assert set(torch.unique(sample["valid"]).tolist()) <= {0.0, 1.0}
    assert torch.isfinite(sample["flow"]).all()
    assert isinstance(sample["name"], str)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def mask_png(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.uint8) * 255


def image_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255


def tiny_sintel(root: Path, flow: np.ndarray, occlusion: np.ndarray, invalid: np.ndarray | None = None) -> Path:
    """A one-pair Sintel training tree with the given flow and masks (frames are random)."""
    h, w = occlusion.shape
    rng = np.random.default_rng(0)
    for k in (1, 2):
        save_png(root / "clean" / "scene" / f"frame_{k:04d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    write_flo(root / "flow" / "scene" / "frame_0001.flo", flow)
    save_png(root / "occlusions" / "scene" / "frame_0001.png", mask_png(occlusion))
    if invalid is not None:
        save_png(root / "invalid" / "scene" / "frame_0001.png", mask_png(invalid))
    return root


def translated_pair(h: int, w: int, du: int, dv: int, seed: int = 0) -> dict:
    """A pair whose flow is the constant integer shift (du, dv): warp reproduces current exactly on valid."""
    g = torch.Generator().manual_seed(seed)
    previous = torch.rand(3, h, w, generator=g)
    flow = torch.tensor([float(du), float(dv)]).view(2, 1, 1).expand(2, h, w).clone()
    current = warp(previous[None], flow[None])[0]
    return make_sample(current, previous, flow, torch.ones(1, h, w), "translated")


# ----------------------------------------------------------------------------------------------- Sintel


def test_sintel_pairs_are_time_reversed_so_previous_warps_onto_current(sintel_root):
    dataset = SintelPairs(sintel_root)
    assert len(dataset) == CONFIG.frames - 1
    for index in range(len(dataset)):
        sample = dataset[index]
        assert_pair_sample(sample, (H, W))
        k = index + 1
        assert sample["name"].endswith(f"frame_{k:04d}->frame_{k + 1:04d}")
        # current = frame k, previous = frame k+1, flow = the stored flow k -> k+1, not negated
        frames = sintel_root / "clean" / "synthetic_000"
        assert torch.equal(sample["current"], data.read_image(frames / f"frame_{k:04d}.png"))
        assert torch.equal(sample["previous"], data.read_image(frames / f"frame_{k + 1:04d}.png"))
        stored = read_flo(sintel_root / "flow" / "synthetic_000" / f"frame_{k:04d}.flo")
        stored = torch.from_numpy(stored).permute(2, 0, 1)
        assert torch.equal(sample["flow"], stored)
        good = warp_error(sample)
        assert good < 0.015
        assert warp_error(sample, -sample["flow"]) > 5 * good  # regression test for a silent -flow


def test_synthetic_pairs_forward_direction_reads_backward_flow(sintel_root, sequence):
    forward = SyntheticPairs(sintel_root, direction="forward")
    both = SyntheticPairs(sintel_root, direction="both")
    assert len(both) == 2 * len(forward) == 2 * (CONFIG.frames - 1)
    for index in range(len(forward)):
        sample = forward[index]
        k = index + 2  # Sintel numbering: current = frame k, previous = frame k-1
        assert sample["name"].endswith(f"frame_{k:04d}->frame_{k - 1:04d}")
        assert torch.equal(sample["current"], image_tensor(sequence.frames[k - 1]))
        assert torch.equal(sample["previous"], image_tensor(sequence.frames[k - 2]))
        expected_valid = torch.from_numpy(sequence.valid_backward[k - 2]).float()[None]
        assert torch.equal(sample["valid"], expected_valid * inside_mask(sample["flow"][None])[0])
        assert warp_error(sample) < 0.015
        assert warp_error(sample, -sample["flow"]) > 5 * warp_error(sample)


def test_synthetic_pairs_without_root_use_the_default_dataset(sintel_root, monkeypatch):
    asked = []
    monkeypatch.setattr(synthetic, "default_dataset", lambda quick=None: asked.append(quick) or sintel_root)
    dataset = SyntheticPairs(quick=True)
    assert asked == [True] and len(dataset) == CONFIG.frames - 1
    assert dataset[0]["name"].startswith("synthetic/")


def test_occlusion_png_white_means_invalid_and_invalid_png_too(tmp_path):
    occlusion = np.zeros((6, 8), bool)
    occlusion[1:3, 2:5] = True
    invalid = np.zeros((6, 8), bool)
    invalid[5, 0] = True
    root = tiny_sintel(tmp_path / "training", np.zeros((6, 8, 2), np.float32), occlusion, invalid)
    sample = SintelPairs(root)[0]
    expected = ~occlusion & ~invalid
    assert torch.equal(sample["valid"][0], torch.from_numpy(expected).float())


def test_unknown_flow_becomes_zero_flow_with_valid_zero(tmp_path):
    flow = np.zeros((6, 8, 2), np.float32)
    flow[2, 3] = (np.nan, 0.0)
    flow[4, 4] = (0.0, 1e10)  # the .flo "unknown" marker
    root = tiny_sintel(tmp_path / "training", flow, np.zeros((6, 8), bool))
    sample = SintelPairs(root)[0]
    assert torch.isfinite(sample["flow"]).all()
    assert torch.equal(sample["flow"][:, 2, 3], torch.zeros(2)) and torch.equal(sample["flow"][:, 4, 4], torch.zeros(2))
    assert sample["valid"][0, 2, 3] == 0 and sample["valid"][0, 4, 4] == 0
    assert sample["valid"].sum() == 6 * 8 - 2


def test_flow_leaving_the_frame_is_invalid(tmp_path):
    flow = np.zeros((6, 8, 2), np.float32)
    flow[..., 0] = 2.0  # everything moves 2 pixels right: the last two columns leave the frame
    root = tiny_sintel(tmp_path / "training", flow, np.zeros((6, 8), bool))
    valid = SintelPairs(root)[0]["valid"][0]
    assert valid[:, :6].all() and not valid[:, 6:].any()


def test_missing_sintel_root_raises_a_helpful_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="mpi_sintel") as info:
        SintelPairs(tmp_path / "nowhere")
    assert isinstance(info.value, UserInputError) and isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty" / "clean").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="mpi_sintel"):
        SintelPairs(tmp_path / "empty")


def test_real_sintel_has_no_forward_direction(tmp_path):
    root = tiny_sintel(tmp_path / "training", np.zeros((6, 8, 2), np.float32), np.zeros((6, 8), bool))
    with pytest.raises(DatasetNotFoundError, match="flow_backward"):
        SintelPairs(root, direction="forward")


def test_unknown_sintel_scene_is_refused(sintel_root):
    with pytest.raises(UserInputError, match="synthetic_000"):
        SintelPairs(sintel_root, scenes=["alley_1"])


def test_parent_of_the_training_folder_is_accepted(sintel_root):
    assert len(SintelPairs(sintel_root.parent)) == len(SintelPairs(sintel_root))


# ----------------------------------------------------------------------------------------------- transforms


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(4, 12), w=st.integers(4, 12), du=st.integers(-3, 3), dv=st.integers(-3, 3),
    seed=st.integers(0, 1000), data_=st.data(),
)
def test_crop_and_flip_keep_integer_shifts_exact(h, w, du, dv, seed, data_):
    sample = translated_pair(h, w, du, dv, seed)
    ch, cw = data_.draw(st.integers(1, h)), data_.draw(st.integers(1, w))
    cropped = random_crop_pair(sample, (ch, cw), torch.Generator().manual_seed(seed))
    for out in (cropped, hflip_pair(cropped)):
        assert_pair_sample(out, (ch, cw))
        valid = out["valid"][None]
        # the pair itself was made with warp (grid_sample, within an ulp of exact); the gather derivation and
        # warp both line the frames up again to float rounding
        warped = warp_by_gather(out["previous"][None], out["flow"][None])
        assert torch.allclose(warped * valid, out["current"][None] * valid, atol=1e-6)
        fast = warp(out["previous"][None], out["flow"][None])
        assert torch.allclose(fast * valid, out["current"][None] * valid, atol=1e-5)
        # exactly the pixels whose shifted position stays inside the crop are valid
        assert int(valid.sum()) == max(0, ch - abs(dv)) * max(0, cw - abs(du))


def test_random_crop_takes_the_same_window_everywhere():
    sample = translated_pair(10, 12, 1, -2, seed=1)
    out = random_crop_pair(sample, (5, 7), torch.Generator().manual_seed(4))
    matches = [
        (top, left)
        for top in range(6)
        for left in range(6)
        if torch.equal(out["current"], sample["current"][:, top : top + 5, left : left + 7])
    ]
    assert len(matches) == 1
    top, left = matches[0]
    assert torch.equal(out["previous"], sample["previous"][:, top : top + 5, left : left + 7])
    assert torch.equal(out["flow"], sample["flow"][:, top : top + 5, left : left + 7])


def test_hflip_twice_is_the_identity(sintel_root):
    sample = SintelPairs(sintel_root)[0]
    twice = hflip_pair(hflip_pair(sample))
    for key in ("current", "previous", "flow", "valid"):
        assert torch.equal(twice[key], sample[key])
    assert twice["name"] == sample["name"]


def test_transforms_keep_the_warp_relation_on_a_synthetic_scene(sintel_root):
    sample = SintelPairs(sintel_root)[1]
    before = warp_error(sample)
    outputs = {
        "hflip": hflip_pair(sample),
        "crop": random_crop_pair(sample, (24, 30), torch.Generator().manual_seed(0)),
        "down": resize_pair(sample, (20, 24)),
        "up": resize_pair(sample, (80, 96)),
        "odd": resize_pair(sample, (31, 53)),
    }
    for name, out in outputs.items():
        good = warp_error(out)
        assert good < max(2 * before, 0.015), name
        assert warp_error(out, -out["flow"]) > 4 * good, name
    assert abs(warp_error(outputs["hflip"]) - before) < 1e-6


def test_resize_pair_scales_the_flow_vectors():
    flow = torch.tensor([2.0, -1.0]).view(2, 1, 1).expand(2, 8, 10)
    sample = make_sample(torch.rand(3, 8, 10), torch.rand(3, 8, 10), flow, torch.ones(1, 8, 10), "c")
    out = resize_pair(sample, (16, 30))
    assert_pair_sample(out, (16, 30))
    assert torch.allclose(out["flow"][0], torch.full((16, 30), 6.0))  # u * 30 / 10
    assert torch.allclose(out["flow"][1], torch.full((16, 30), -2.0))  # v * 16 / 8


def _touching(n_src: int, n_dst: int, p: int) -> set[int]:
    """Target indices whose bilinear (upsampling) source position is less than one pixel from p."""
    return {i for i in range(n_dst) if abs((i + 0.5) * n_src / n_dst - 0.5 - p) < 1}


def test_resize_pair_valid_mask_is_conservative():
    valid = torch.ones(1, 8, 8)
    valid[0, 3, 4] = 0
    sample = make_sample(torch.rand(3, 8, 8), torch.rand(3, 8, 8), torch.zeros(2, 8, 8), valid, "m")
    up = resize_pair(sample, (16, 16))["valid"][0]
    rows, cols = _touching(8, 16, 3), _touching(8, 16, 4)
    expected = torch.ones(16, 16)
    for r in rows:
        for c in cols:
            expected[r, c] = 0
    assert torch.equal(up, expected)
    down = resize_pair(sample, (4, 4))["valid"][0]
    assert down[3 // 2, 4 // 2] == 0  # the cell covering the invalid pixel
    assert down.sum() >= 16 - 4  # and only its neighbourhood


def test_crop_larger_than_the_sample_is_refused():
    with pytest.raises(UserInputError, match="larger than the sample"):
        random_crop_pair(translated_pair(6, 6, 0, 0), (8, 4))


def test_pair_augment_is_reproducible_and_fits_small_samples():
    sample = translated_pair(10, 12, 1, 1, seed=2)
    augment = PairAugment(crop=(16, 16), flip_probability=0.5, scale_range=(1.0, 1.5))
    a = augment(sample, torch.Generator().manual_seed(7))
    b = augment(sample, torch.Generator().manual_seed(7))
    assert_pair_sample(a, (16, 16))
    for key in ("current", "previous", "flow", "valid"):
        assert torch.equal(a[key], b[key])
    flipped = PairAugment(size=(10, 12), flip_probability=1.0)(sample, torch.Generator().manual_seed(0))
    assert torch.equal(flipped["flow"], hflip_pair(sample)["flow"])
    with pytest.raises(UserInputError):
        PairAugment(flip_probability=1.5)


def test_dataset_augmentation_is_reproducible_without_the_global_rng(sintel_root):
    dataset = SintelPairs(sintel_root, augment=PairAugment(crop=(24, 24)), seed=5)
    torch.manual_seed(0)
    first = dataset[1]
    torch.manual_seed(1)  # the global RNG plays no part
    again = dataset[1]
    assert torch.equal(first["current"], again["current"]) and torch.equal(first["flow"], again["flow"])
    assert_pair_sample(first, (24, 24))


def test_augmentation_draws_only_from_the_generator_passed(sintel_root):
    dataset = SintelPairs(sintel_root, augment=PairAugment(crop=(16, 16), scale_range=(0.8, 1.3)), seed=5)
    state = torch.get_rng_state()
    a = dataset.pair(1, torch.Generator().manual_seed(7))
    b = dataset.pair(1, torch.Generator().manual_seed(7))
    others = [dataset.pair(1, torch.Generator().manual_seed(s))["current"] for s in range(8, 12)]
    assert torch.equal(state, torch.get_rng_state())  # the global RNG was neither read nor reseeded
    assert torch.equal(a["current"], b["current"]) and torch.equal(a["flow"], b["flow"])
    assert any(not torch.equal(a["current"], other) for other in others)  # other generators, other crops


def test_mixed_pairs_pass_the_generator_to_their_source(sintel_root):
    source = SintelPairs(sintel_root, augment=PairAugment(crop=(16, 16)), seed=5)
    mixed = MixedPairs([(source, 1.0)], length=6, seed=0)
    _, inner = mixed.choice(2)
    got = mixed.pair(2, torch.Generator().manual_seed(3))
    assert torch.equal(got["current"], source.pair(inner, torch.Generator().manual_seed(3))["current"])
    assert data.read_pair(mixed, 2, torch.Generator().manual_seed(3))["name"] == got["name"]


# ----------------------------------------------------------------------------------------------- Scene Flow


def write_sceneflow_sequence(root: Path, rel: str, seq, stems: list[str], boundary=(2, 3)) -> None:
    """Frames, into_past/into_future PFM flows and motion boundaries in the Scene Flow layout."""
    zeros = np.zeros((H, W, 2), np.float32)
    for t, stem in enumerate(stems):
        save_png(root / "frames_finalpass" / rel / "left" / f"{stem}.png", seq.frames[t])
        past = seq.flow_backward[t - 1] if t > 0 else zeros  # frame t -> t-1
        future = seq.flow_forward[t] if t < len(stems) - 1 else zeros  # frame t -> t+1
        write_flow(root / "optical_flow" / rel / "into_past" / "left" / f"OpticalFlowIntoPast_{stem}_L.pfm", past)
        write_flow(root / "optical_flow" / rel / "into_future" / "left" / f"OpticalFlowIntoFuture_{stem}_L.pfm", future)
        mb = np.zeros((H, W), np.uint8)
        mb[boundary] = 255
        path = root / "motion_boundaries" / rel / "into_past" / "left" / f"{stem}.pgm"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mb).save(path)


def check_forward_pair(sample, seq, t, boundary=(2, 3)):
    """current = frame t, previous = t-1, flow = into_past of t, valid excludes boundaries and occlusions."""
    assert_pair_sample(sample, (H, W))
    assert torch.equal(sample["current"], image_tensor(seq.frames[t]))
    assert torch.equal(sample["previous"], image_tensor(seq.frames[t - 1]))
    valid = sample["valid"][0] > 0
    true_flow = torch.from_numpy(seq.flow_backward[t - 1]).permute(2, 0, 1)
    assert torch.equal(sample["flow"][:, valid], true_flow[:, valid])
    assert sample["valid"][0][boundary] == 0
    occluded = torch.from_numpy(seq.occlusion_backward[t - 1])
    assert float((valid & occluded).sum()) <= 0.1 * float(occluded.sum())
    assert float(valid.float().mean()) > 0.5
    assert warp_error(sample) < 0.015 and warp_error(sample, -sample["flow"]) > 5 * warp_error(sample)


def test_sceneflow_monkaa_pairs_read_into_past_forwards(tmp_path, sequence):
    root = tmp_path / "monkaa"
    write_sceneflow_sequence(root, "a_scene", sequence, ["0000", "0001", "0002"])
    dataset = SceneFlowPairs(root, "monkaa")
    assert len(dataset) == 2
    for index in range(2):
        sample = dataset[index]
        assert sample["name"] == f"monkaa/a_scene/left/{index + 1:04d}->{index:04d}"
        check_forward_pair(sample, sequence, index + 1)


def test_sceneflow_flyingthings3d_pairs_use_the_split(tmp_path, sequence):
    root = tmp_path / "flyingthings3d"
    write_sceneflow_sequence(root, "TRAIN/A/0000", sequence, ["0006", "0007"])
    write_sceneflow_sequence(root, "TEST/B/0001", sequence, ["0006", "0007", "0008"])
    train = SceneFlowPairs(root, "flyingthings3d")
    test = SceneFlowPairs(root, "flyingthings3d", split="TEST")
    assert len(train) == 1 and len(test) == 2
    assert train[0]["name"] == "flyingthings3d/TRAIN/A/0000/left/0007->0006"
    check_forward_pair(train[0], sequence, 1)
    with pytest.raises(DatasetNotFoundError, match="Scene Flow"):
        SceneFlowPairs(tmp_path / "missing", "flyingthings3d")


# ----------------------------------------------------------------------------------------------- FlyingChairs2


def test_flyingchairs2_pairs_are_img1_to_img0_with_occ_10(tmp_path, sequence):
    folder = tmp_path / "FlyingChairs2" / "train"
    for key in ("0000000", "0000001"):
        save_png(folder / f"{key}-img_0.png", sequence.frames[0])
        save_png(folder / f"{key}-img_1.png", sequence.frames[1])
        write_flo(folder / f"{key}-flow_10.flo", sequence.flow_backward[0])
        write_flo(folder / f"{key}-flow_01.flo", sequence.flow_forward[0])
        save_png(folder / f"{key}-occ_01.png", mask_png(sequence.occlusion_forward[0]))
    save_png(folder / "0000000-occ_10.png", mask_png(sequence.occlusion_backward[0]))  # 0000001: none
    dataset = FlyingChairs2Pairs(tmp_path / "FlyingChairs2")
    assert len(dataset) == 2
    with_occ, derived = dataset[0], dataset[1]
    assert with_occ["name"] == "flyingchairs2/train/0000000-img_1->img_0"
    assert torch.equal(with_occ["current"], image_tensor(sequence.frames[1]))
    assert torch.equal(with_occ["flow"], torch.from_numpy(sequence.flow_backward[0]).permute(2, 0, 1))
    expected = torch.from_numpy(sequence.valid_backward[0]).float() * inside_mask(with_occ["flow"][None])[0, 0]
    assert torch.equal(with_occ["valid"][0], expected)
    # without occ_10 the forward-backward check stands in and still rejects most occluded pixels
    check_forward_pair(derived, sequence, 1, boundary=(0, 0))


def test_flyingchairs2_missing_split_is_explained(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="FlyingChairs2"):
        FlyingChairs2Pairs(tmp_path)


# ----------------------------------------------------------------------------------------------- mixtures


class Named(torch.utils.data.Dataset):
    def __init__(self, label: str, n: int):
        self.label, self.n = label, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return {"name": f"{self.label}{index}"}


def test_mixed_pairs_follow_the_weights_deterministically():
    mixed = MixedPairs([(Named("a", 5), 3.0), (Named("b", 7), 1.0)], length=2000, seed=1)
    names = [mixed[i]["name"] for i in range(len(mixed))]
    share_a = sum(n.startswith("a") for n in names) / len(names)
    assert abs(share_a - 0.75) < 0.04
    assert {n for n in names if n.startswith("b")} == {f"b{i}" for i in range(7)}
    assert [mixed[i]["name"] for i in range(50)] == names[:50]
    other = MixedPairs([(Named("a", 5), 3.0), (Named("b", 7), 1.0)], length=2000, seed=2)
    assert [other[i]["name"] for i in range(50)] != names[:50]
    with pytest.raises(UserInputError, match="positive"):
        MixedPairs([(Named("a", 5), 0.0)], length=10)
