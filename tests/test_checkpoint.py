"""Checkpoint files: atomic writes, weights_only loading, refusal of foreign files, ready-to-run models."""
import os

import pytest
import torch

from reconet_lib import load_model
from reconet_lib.checkpoint import FORMAT, load_checkpoint, model_checkpoint, save_checkpoint
from reconet_lib.errors import UserInputError
from reconet_lib.network import ReCoNet


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return ReCoNet.from_preset("tiny")


def test_saved_model_loads_with_weights_only_and_reproduces_outputs(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pt", model_checkpoint(tiny_model, "mosaic", "ab" * 32, {"steps": 3}))
    payload = torch.load(path, weights_only=True)  # plain types and tensors only
    assert payload["format"] == FORMAT and payload["style_name"] == "mosaic"
    model = load_model(path)
    assert not model.training and model.style_name == "mosaic" and model.style_sha256 == "ab" * 32
    x = torch.rand(1, 3, 20, 28)
    tiny_model.eval()
    assert torch.equal(model(x), tiny_model(x))


def test_save_leaves_no_temporary_files_and_replaces_atomically(tmp_path, tiny_model, monkeypatch):
    target = tmp_path / "ckpt.pt"
    save_checkpoint(target, model_checkpoint(tiny_model, "a", "0" * 64))
    before = target.read_bytes()

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, model_checkpoint(tiny_model, "b", "1" * 64))
    assert target.read_bytes() == before  # the good file survives a failed write
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_saved_checkpoint_gets_ordinary_file_permissions(tmp_path, tiny_model):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.pt", model_checkpoint(tiny_model, "a", "0" * 64))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a torch file", "not a readable ReCoNet checkpoint"),
        (None, "no format tag"),
    ],
)
def test_foreign_files_are_refused_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "other.pt"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=message):
        load_model(path)


def test_checkpoint_with_pickled_objects_is_refused_by_weights_only(tmp_path, tiny_model):
    payload = model_checkpoint(tiny_model, "a", "0" * 64)
    payload["train_config"] = object()  # arbitrary objects would need unpickling code
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(UserInputError, match="not a readable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="reconet_lib train"):
        load_model(tmp_path / "nope.pt")


def test_incomplete_and_newer_checkpoints_are_refused(tmp_path, tiny_model):
    payload = model_checkpoint(tiny_model, "a", "0" * 64)
    del payload["model"]
    torch.save(payload, tmp_path / "partial.pt")
    with pytest.raises(UserInputError, match="missing model"):
        load_model(tmp_path / "partial.pt")
    payload = model_checkpoint(tiny_model, "a", "0" * 64)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(UserInputError, match="newer"):
        load_model(tmp_path / "new.pt")


def test_empty_and_truncated_checkpoints_are_refused_with_one_line(tmp_path, tiny_model):
    good = save_checkpoint(tmp_path / "good.pt", model_checkpoint(tiny_model, "a", "0" * 64)).read_bytes()
    for name, content, message in (("empty.pt", b"", "empty"), ("cut.pt", good[: len(good) // 3], "not a readable")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserInputError, match=message) as info:
            load_model(tmp_path / name)
        assert "\n" not in str(info.value)


def test_step_checkpoints_keep_last_and_an_identical_last_pt(tmp_path, tiny_model):
    from reconet_lib.checkpoint import checkpoint_files, latest_checkpoint, resume_point, save_step_checkpoint

    for step in (1, 2, 3):
        payload = {**model_checkpoint(tiny_model, "a", "0" * 64), "step": step}
        save_step_checkpoint(tmp_path, payload, keep_last=2)
    assert [p.name for p in checkpoint_files(tmp_path)] == ["step_0000002.pt", "step_0000003.pt"]
    assert (tmp_path / "last.pt").read_bytes() == (tmp_path / "step_0000003.pt").read_bytes()
    assert latest_checkpoint(tmp_path) == tmp_path / "last.pt"
    path, payload = resume_point(tmp_path)
    assert path.name == "last.pt" and payload["step"] == 3
    (tmp_path / "last.pt").unlink()
    assert resume_point(tmp_path)[0].name == "step_0000003.pt"


def test_a_folder_lock_is_exclusive_across_holders(tmp_path):
    from reconet_lib.checkpoint import exclusive

    with exclusive(tmp_path / "run" / ".lock", wait=False):
        with pytest.raises(UserInputError, match="another process"):
            with exclusive(tmp_path / "run" / ".lock", wait=False):
                pass
    with exclusive(tmp_path / "run" / ".lock", wait=False):  # released on leaving the block
        pass


def test_directory_as_checkpoint_names_the_checkpoints_in_it(tmp_path):
    for name in ("last.pt", "step_0000100.pt", "step_0000200.pt", "step_0000300.pt", "other.pt"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(UserInputError, match="is a directory, not a file") as info:
        load_model(tmp_path)
    message = str(info.value)
    assert "does not exist" not in message and "\n" not in message
    named = [str(tmp_path / n) for n in ("last.pt", "step_0000300.pt", "step_0000200.pt")]
    assert ", ".join(named) in message and "(2 more there)" in message  # best candidates first


def test_directory_without_checkpoints_says_it_is_a_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserInputError, match="is a directory with no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "last.pt").write_bytes(b"x")
    with pytest.raises(UserInputError, match="run1.last.pt"):  # one level down: a folder of runs
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content, cause", [
    (b"hello, this is a text file\n", "not a PyTorch checkpoint file: it does not start like one; it looks like a text file"),
    (b"\x00\x01\x02\x03\xff" * 10, "not a PyTorch checkpoint file: it does not start like one)"),
    (b"PK\x03\x04" + b"\x00" * 40, "damaged or incomplete"),
])
def test_unreadable_checkpoint_cause_is_in_words_not_a_raw_exception(tmp_path, content, cause):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(UserInputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "is not a readable ReCoNet checkpoint" in message and cause in message, message
    assert "KeyError" not in message and "\n" not in message


def test_checkpoint_with_python_objects_names_what_safe_loading_refused(tmp_path, tiny_model):
    payload = model_checkpoint(tiny_model, "a", "0" * 64)
    payload["train_config"] = object()
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(UserInputError, match=r"holds code or a Python object \(object\) that safe loading"):
        load_checkpoint(tmp_path / "evil.pt")
