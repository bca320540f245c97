"""Extraction: decoding with timestamps, backbones, I3D checkpoint names, the whole job."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_MODELS, TINY_SPEC, prvr

from prvr_cli.data.check import check_dataset
from prvr_cli.errors import PrvrError
from prvr_cli.features.decode import DecodeError, Sampling, decode_video, list_videos, plan

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"
CPU = torch.device("cpu")


def test_plan_hand_checked():
    # 20 frames at 8 fps = 2.5 s, 1 s steps -> 3 steps, middle frames at 0.5 s, 1.5 s, 2.25 s
    idx, times = plan(20, 8.0, Sampling(1.0, 1, 32))
    assert idx[:, 0].tolist() == [4, 12, 18]
    assert times.tolist() == [[0, 1], [1, 2], [2, 2.5]]
    idx, _ = plan(16, 8.0, Sampling(2.0, 4, 32))  # one 2 s window, 4 frames at .25 .75 1.25 1.75 s
    assert idx.tolist() == [[2, 6, 10, 14]]


def test_decode_sample_with_timestamps(user_threads):
    # warm torch's thread pool first: a forked decoder must not deadlock on it
    torch.nn.functional.interpolate(torch.rand(4, 3, 256, 256), size=(128, 128), mode="bilinear")
    clips, times, info = decode_video(SAMPLES / "street_boxes.mp4", Sampling(1.0, 1, 36), timeout=60)
    assert info["frames"] == 64 and info["fps"] == 8.0
    assert clips.shape == (8, 1, 36, 48, 3) and clips.dtype == np.uint8
    native, _, _ = decode_video(SAMPLES / "street_boxes.mp4", Sampling(1.0, 1, 224))
    assert native.shape == (8, 1, 72, 96, 3)  # never upscaled at decode time
    assert times[0].tolist() == [0, 1] and times[-1].tolist() == [7, 8]
    # the third event of this clip (4-6 s) is a white box on grey: bright pixels present
    assert clips[4, 0].max() > 200


def test_decode_errors_are_contained(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    data = (SAMPLES / "park_balls.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 8])
    for name in ("empty.mp4", "text.mp4", "cut.mp4"):
        with pytest.raises(DecodeError):
            decode_video(tmp_path / name, Sampling(1.0, 1, 32))
    with pytest.raises(DecodeError, match="timed out"):
        decode_video(SAMPLES / "park_balls.mp4", Sampling(1.0, 1, 32), timeout=1e-4)


@pytest.mark.slow
def test_backbone_output_shapes():
    from prvr_cli.features.backbones import build_visual
    from prvr_cli.features.text import build_text

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 1, 40, 52, 3), dtype=np.uint8)
    clip = build_visual("clip", clip_model="prvr-tiny-clip", device=CPU)
    assert clip.encode(frames).shape == (3, 32)
    resnet = build_visual("resnet152", resnet_checkpoint="prvr-tiny-resnet152", device=CPU)
    assert resnet.encode(frames[:2]).shape == (2, 2048)
    windows = rng.integers(0, 255, (2, 16, 64, 80, 3), dtype=np.uint8)
    i3d = build_visual("i3d", i3d_checkpoint="prvr-tiny-i3d", device=CPU)
    assert i3d.encode(windows).shape == (2, 1024)
    both = build_visual(
        "resnet152+i3d", resnet_checkpoint="prvr-tiny-resnet152", i3d_checkpoint="prvr-tiny-i3d", device=CPU
    )
    assert both.encode(windows).shape == (2, 3072) and both.name == "i3d_resnet"
    roberta = build_text("roberta", model="prvr-tiny-roberta")
    tokens = roberta.tokenizer("the red ball", return_special_tokens_mask=True)
    out = roberta.encode(["the red ball", "a square moves left slowly"])
    assert out[0].shape == (sum(1 - m for m in tokens["special_tokens_mask"]), 32)
    assert out[1].shape[0] > out[0].shape[0]
    clip_text = build_text("clip", clip_model="prvr-tiny-clip")
    assert [t.shape for t in clip_text.encode(["red ball", "a"])] == [(2, 32), (1, 32)]


def public_i3d_state(num_classes=400):
    """A state dict named and shaped as the public rgb_imagenet.pt (no num_batches_tracked)."""
    g = torch.Generator().manual_seed(0)
    state = {}

    def unit(prefix, c_in, c_out, k):
        state[f"{prefix}.conv3d.weight"] = torch.randn(c_out, c_in, *k, generator=g) * 0.01
        for stat in ("weight", "bias", "running_mean"):
            state[f"{prefix}.bn.{stat}"] = torch.randn(c_out, generator=g) * 0.1
        state[f"{prefix}.bn.running_var"] = torch.rand(c_out, generator=g) + 0.5

    unit("Conv3d_1a_7x7", 3, 64, (7, 7, 7))
    unit("Conv3d_2b_1x1", 64, 64, (1, 1, 1))
    unit("Conv3d_2c_3x3", 64, 192, (3, 3, 3))
    mixed = {
        "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
        "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
        "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
        "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
        "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
        "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
        "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
        "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
        "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
    }
    one, three = (1, 1, 1), (3, 3, 3)
    for name, (c_in, c) in mixed.items():
        unit(f"{name}.b0", c_in, c[0], one)
        unit(f"{name}.b1a", c_in, c[1], one)
        unit(f"{name}.b1b", c[1], c[2], three)
        unit(f"{name}.b2a", c_in, c[3], one)
        unit(f"{name}.b2b", c[3], c[4], three)
        unit(f"{name}.b3b", c_in, c[5], one)
    state["logits.conv3d.weight"] = torch.randn(num_classes, 1024, 1, 1, 1, generator=g) * 0.01
    state["logits.conv3d.bias"] = torch.zeros(num_classes)
    return state


@pytest.mark.slow
@pytest.mark.parametrize("classes", [400, 157])
def test_i3d_loads_public_checkpoint_names_strictly(tmp_path, classes):
    from prvr_cli.features.i3d import load_i3d

    state = public_i3d_state(classes)
    torch.save(state, tmp_path / "rgb.pt")
    model = load_i3d(str(tmp_path / "rgb.pt"))
    assert torch.equal(model.Mixed_4e.b2b.bn.running_var, state["Mixed_4e.b2b.bn.running_var"])
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 16, 64, 64)).shape == (1, classes)
        assert model.features(torch.zeros(1, 3, 16, 64, 64)).shape == (1, 1024)
    del state["Mixed_5c.b3b.bn.bias"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(PrvrError, match="does not match the I3D architecture"):
        load_i3d(str(tmp_path / "broken.pt"))
    with pytest.raises(PrvrError, match="pass --i3d-checkpoint"):
        load_i3d(None)


def extract_args(videos, out, *extra):
    return [
        "extract",
        str(videos),
        "--out",
        str(out),
        "--name",
        "samples",
        "--visual",
        "clip",
        "--captions",
        str(SAMPLES / "captions.jsonl"),
        "--text",
        "roberta",
        *TINY_MODELS,
        "--json",
        *extra,
    ]


def digest(base: Path) -> dict:
    return {
        str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file() and ".extract" not in p.parts
    }


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    res = prvr(*extract_args(SAMPLES, out))
    assert res.returncode == 0, res.stderr
    return out, json.loads(res.stdout)


def test_extract_samples_end_to_end(one_run, tmp_path):
    out, summary = one_run
    assert summary["done"] == 5 and summary["failed"] == 0 and summary["captions"] == 14
    rows = check_dataset(out, "samples")
    assert {r["split"]: r["videos"] for r in rows} == {"train": 3, "val": 1, "test": 1}
    base = out / "samples"
    times = json.loads((base / "FeatureData" / "clip_prvr_tiny_clip" / "frame_times.json").read_text())
    assert times["street_boxes"][0] == [0.0, 1.0] and len(times["street_boxes"]) == 8
    meta = json.loads((base / "extract.json").read_text())
    assert (
        meta["visual"]["backbone"] == "clip" and meta["text"]["backbone"] == "roberta" and meta["step_seconds"] == 1.0
    )
    moments = json.loads((base / "TextData" / "samples_moments.json").read_text())
    assert moments["street_boxes#enc#2"] == [4.0, 6.0]
    res = prvr(
        "train",
        "--dry-run",
        "--data-root",
        str(out),
        "--collection",
        "samples",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["epochs_run"] == 1


@pytest.mark.slow
def test_resume_after_interrupt_gives_same_bytes(one_run, tmp_path, monkeypatch):
    from prvr_cli.features import backbones
    from prvr_cli.features import extract as extract_module
    from prvr_cli.features.extract import ExtractSpec, run_extract

    spec = ExtractSpec(
        videos_dir=SAMPLES,
        out=tmp_path,
        name="samples",
        captions=SAMPLES / "captions.jsonl",
        text="roberta",
        **TINY_SPEC,
    )
    monkeypatch.setattr(extract_module, "GROUP_VIDEOS", 2)  # 5 videos -> groups of 2, 2, 1
    calls = {"n": 0}
    real = backbones.ClipVisual.encode

    def flaky(self, clips):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, clips)

    monkeypatch.setattr(backbones.ClipVisual, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_extract(spec, CPU)
    assert len(list((tmp_path / "samples" / ".extract" / "clip_prvr_tiny_clip").glob("*.npz"))) == 2
    monkeypatch.setattr(backbones.ClipVisual, "encode", real)
    summary = run_extract(spec, CPU)
    assert summary["skipped_already_done"] == 2 and summary["done"] == 5
    assert digest(tmp_path / "samples") == digest(one_run[0] / "samples")


@pytest.mark.slow
def test_broken_files_are_reported_and_skipped(tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(SAMPLES, videos)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "notes.mp4").write_text("this is not a video\n")
    data = (SAMPLES / "kitchen_shapes.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 10])
    res = prvr(*extract_args(videos, tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["failures"] == ["cut", "empty", "notes"] and summary["done"] == 5
    failures = json.loads(
        (tmp_path / "out" / "samples" / ".extract" / "clip_prvr_tiny_clip" / "failures.json").read_text()
    )
    assert {f["video"] for f in failures} == {"cut", "empty", "notes"} and all(f["error"] for f in failures)
    assert sum(r["videos"] for r in check_dataset(tmp_path / "out", "samples")) == 5


@pytest.mark.slow
def test_shards_merged_equal_one_run(one_run, tmp_path):
    """Shard 0 by --shard, shard 1 from torchrun's variables (as each process of
    ``torchrun -m prvr_cli extract`` sees them); neither finalizes; --merge assembles."""
    for extra, env in ((["--shard", "0/2"], {}), ([], {"RANK": "1", "WORLD_SIZE": "2"})):
        res = prvr(*extract_args(SAMPLES, tmp_path, *extra), env=env)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["shard"] == ("0/2" if extra else "1/2")
        assert not (tmp_path / "samples" / "FeatureData" / "clip_prvr_tiny_clip" / "feature.bin").exists()
    assert "shard 1/2 (torchrun RANK 1 of WORLD_SIZE 2)" in res.stderr
    res = prvr(*extract_args(SAMPLES, tmp_path, "--merge"), env={"RANK": "0", "WORLD_SIZE": "2"})
    assert res.returncode == 1 and "run it in one process" in res.stderr and "Traceback" not in res.stderr
    res = prvr(*extract_args(SAMPLES, tmp_path, "--merge"))
    assert res.returncode == 0, res.stderr
    assert digest(tmp_path / "samples") == digest(one_run[0] / "samples")


@pytest.mark.parametrize(
    "env, option, expected",
    [
        ({}, None, (0, 1, "one process")),
        ({"RANK": "0", "WORLD_SIZE": "1"}, None, (0, 1, "one process")),
        ({"RANK": "3", "WORLD_SIZE": "4"}, None, (3, 4, "torchrun RANK 3 of WORLD_SIZE 4")),
        ({"RANK": "3", "WORLD_SIZE": "4"}, "1/2", (1, 2, "--shard")),  # the option wins
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "8"}, None, (2, 8, "SLURM array task 2 of 8")),
        (  # --array=1-8
            {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"},
            None,
            (7, 8, "SLURM array task 7 of 8"),
        ),
        (  # --array=0-6:2
            {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"},
            None,
            (2, 4, "SLURM array task 2 of 4"),
        ),
        (  # an array of two-process torchrun jobs
            {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "RANK": "1", "WORLD_SIZE": "2"},
            None,
            (3, 6, "SLURM array task 1 of 3 x torchrun RANK 1 of WORLD_SIZE 2"),
        ),
    ],
)
def test_shard_comes_from_the_option_or_the_launcher(env, option, expected):
    from prvr_cli.features.shards import choose_shard

    assert choose_shard(option, env) == expected


@pytest.mark.parametrize(
    "env, option, message",
    [
        ({}, "2/2", "--shard 2/2: expected I/N with 0 <= I < N"),
        ({}, "half", "--shard 'half': expected I/N"),
        ({"WORLD_SIZE": "2"}, None, "WORLD_SIZE is set but RANK is not"),
        ({"SLURM_ARRAY_TASK_ID": "3"}, None, "SLURM_ARRAY_TASK_COUNT is not"),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3"}, None, "not one of evenly spaced ids"),
    ],
)
def test_bad_shard_settings_are_one_line_errors(env, option, message):
    from prvr_cli.features.shards import choose_shard

    with pytest.raises(PrvrError, match=re.escape(message)):
        choose_shard(option, env)


@pytest.mark.slow
def test_offline_error_messages(tmp_path, monkeypatch):
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    res = prvr("extract", str(SAMPLES), "--out", str(tmp_path), "--name", "x", "--visual", "clip", env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "could not load open_clip ViT-L-14 weights 'openai'" in res.stderr and "Pre-download" in res.stderr
    import huggingface_hub.constants

    from prvr_cli.features.text import RobertaText

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PrvrError, match="could not load the text model 'definitely-not-a-local-model'.*--text-model"):
        RobertaText("definitely-not-a-local-model")
    res = prvr("extract", str(SAMPLES), "--out", str(tmp_path), "--name", "y", "--visual", "i3d", env=env)
    assert res.returncode == 1 and "--i3d-checkpoint" in res.stderr


def test_list_videos_rejects_clashing_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    (tmp_path / "x.mkv").write_bytes(b"")
    with pytest.raises(PrvrError, match="video id 'x' is also"):
        list_videos(tmp_path)


def test_bad_captions_file_is_a_clear_error(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"video": "a", "text": "ok"}\n{"video": "b"}\n')
    res = prvr(
        "extract",
        str(SAMPLES),
        "--out",
        str(tmp_path),
        "--name",
        "x",
        *TINY_MODELS,
        "--captions",
        str(tmp_path / "c.jsonl"),
    )
    assert res.returncode == 1 and "c.jsonl:2: expected an object with string fields" in res.stderr


def lines_of(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


def frame_rows(out: Path) -> dict:
    return json.loads((out / "samples" / "FeatureData" / "clip_prvr_tiny_clip" / "frame_times.json").read_text())


@pytest.mark.slow
def test_cache_follows_settings_and_files(tmp_path):
    from prvr_cli.features.extract import ExtractSpec, finalize, run_extract

    videos = tmp_path / "videos"
    shutil.copytree(SAMPLES, videos)
    out, logs = tmp_path / "out", []

    def spec(**kw):
        return ExtractSpec(
            videos_dir=videos,
            out=out,
            name="samples",
            captions=videos / "captions.jsonl",
            text="roberta",
            **TINY_SPEC,
            **kw,
        )

    run_extract(spec(), CPU)
    assert len(frame_rows(out)["street_boxes"]) == 8
    # another --fps: every video is extracted again, not reused with the new step recorded
    summary = run_extract(spec(fps=2.0), CPU, log=logs.append)
    assert len(frame_rows(out)["street_boxes"]) == 16
    assert summary["re_extracted"] == {"settings changed": sorted(list_videos(videos)), "file changed": []}
    assert any(m.startswith("re-extracting 5 video(s), settings changed") for m in logs)
    assert json.loads((out / "samples" / "extract.json").read_text())["step_seconds"] == 0.5
    # a replaced video and a deleted one: what --merge assembles is what the folder holds now
    shutil.copyfile(videos / "garden_light.mp4", videos / "street_boxes.mp4")  # 6 s instead of 8 s
    (videos / "garden_light.mp4").unlink()
    summary = finalize(spec(fps=2.0), CPU, log=logs.append)
    assert summary["removed"] == ["garden_light"] and summary["not_extracted"] == ["street_boxes"]
    assert sorted(frame_rows(out)) == ["kitchen_shapes", "night_signals", "park_balls"]
    summary = run_extract(spec(fps=2.0), CPU)
    assert summary["re_extracted"] == {"settings changed": [], "file changed": ["street_boxes"]}
    assert summary["skipped_already_done"] == 0 and summary["videos_in_dataset"] == 4  # one group of four
    assert len(frame_rows(out)["street_boxes"]) == 12 and "garden_light" not in frame_rows(out)
    fresh = tmp_path / "fresh"
    run_extract(
        ExtractSpec(
            videos_dir=videos,
            out=fresh,
            name="samples",
            captions=videos / "captions.jsonl",
            text="roberta",
            **TINY_SPEC,
            fps=2.0,
        ),
        CPU,
    )
    assert digest(out / "samples") == digest(fresh / "samples")


def test_settings_fingerprint_follows_checkpoint_bytes(tmp_path):
    from prvr_cli.features.extract import ExtractSpec, fingerprint, settings_of

    class Stub:
        frames_per_step = 16

        def describe(self):
            return {"backbone": "i3d", "checkpoint": str(tmp_path / "rgb.pt")}

    (tmp_path / "rgb.pt").write_bytes(b"weights one")
    spec = ExtractSpec(
        videos_dir=SAMPLES, out=tmp_path, name="x", visual="i3d", i3d_checkpoint=str(tmp_path / "rgb.pt")
    )
    first = fingerprint(settings_of(spec, Stub()))
    assert fingerprint(settings_of(spec, Stub())) == first
    spec.clip_seconds = 2.0
    assert fingerprint(settings_of(spec, Stub())) != first
    spec.clip_seconds = None
    (tmp_path / "rgb.pt").write_bytes(b"weights two")  # replaced at the same path
    assert fingerprint(settings_of(spec, Stub())) != first


def test_decoder_noise_stays_off_stderr_and_in_the_error(tmp_path, capfd):
    data = (SAMPLES / "park_balls.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 8])
    with pytest.raises(DecodeError, match="moov atom not found"):
        decode_video(tmp_path / "cut.mp4", Sampling(1.0, 1, 32))
    assert "moov atom" not in capfd.readouterr().err


def test_broken_symlink_is_listed_and_fails_clearly(tmp_path):
    shutil.copyfile(SAMPLES / "park_balls.mp4", tmp_path / "park_balls.mp4")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    assert sorted(list_videos(tmp_path)) == ["gone", "park_balls"]
    with pytest.raises(DecodeError, match="broken symlink"):
        decode_video(tmp_path / "gone.mp4", Sampling(1.0, 1, 32))


def test_failures_are_not_redone_until_their_file_changes(tmp_path, monkeypatch, capfd):
    from prvr_cli.features import extract as extract_module
    from prvr_cli.features.extract import ExtractSpec, run_extract

    videos = tmp_path / "videos"
    shutil.copytree(SAMPLES, videos)
    data = (SAMPLES / "park_balls.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 8])  # no moov atom
    spec = ExtractSpec(videos_dir=videos, out=tmp_path / "out", name="samples", **TINY_SPEC)
    summary = run_extract(spec, CPU)
    assert summary["failures"] == ["cut"] and summary["done"] == 5
    decoded = []
    real = extract_module.decode_video
    monkeypatch.setattr(
        extract_module, "decode_video", lambda path, *a: decoded.append(Path(path).stem) or real(path, *a)
    )
    summary = run_extract(spec, CPU)  # nothing changed: the group of the failed video is not redone
    assert decoded == [] and summary["skipped_already_done"] == 6 and summary["failures"] == ["cut"]
    failures = json.loads((tmp_path / "out" / "samples" / "extract.json").read_text())["failures"]
    assert "moov atom not found" in failures[0]["error"] and "moov atom" not in capfd.readouterr().err
    shutil.copyfile(SAMPLES / "park_balls.mp4", videos / "cut.mp4")  # the failed file is fixed
    (videos / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    summary = run_extract(spec, CPU)
    assert summary["re_extracted"]["file changed"] == ["cut"] and summary["failures"] == ["gone"]
    assert sorted(decoded) == ["cut", "garden_light", "gone", "kitchen_shapes"] and summary["videos_in_dataset"] == 6
    failures = json.loads((tmp_path / "out" / "samples" / "extract.json").read_text())["failures"]
    assert failures[0]["video"] == "gone" and failures[0]["error"].startswith("broken symlink")
    decoded.clear()
    assert run_extract(spec, CPU)["failures"] == ["gone"] and decoded == []


def test_every_model_loads_before_any_video_is_decoded(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from prvr_cli.features import extract as extract_module
    from prvr_cli.features.backbones import build_visual
    from prvr_cli.features.extract import ExtractSpec, run_extract

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(
        extract_module,
        "_build_visual",
        lambda spec, device: build_visual("clip", clip_model="prvr-tiny-clip", device=device),
    )
    decoded = []
    real = extract_module.decode_video
    monkeypatch.setattr(extract_module, "decode_video", lambda *a: decoded.append(a) or real(*a))
    spec = ExtractSpec(
        videos_dir=SAMPLES,
        out=tmp_path,
        name="x",
        captions=SAMPLES / "captions.jsonl",
        text="roberta",
        text_model="definitely-not-a-local-model",
    )
    with pytest.raises(PrvrError, match="could not load the text model 'definitely-not-a-local-model'.*--text-model"):
        run_extract(spec, CPU)
    assert decoded == [] and not list(tmp_path.rglob("*.npz"))


def test_search_offline_advice_fits_search(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from prvr_cli.features.text import text_from_record

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PrvrError) as err:
        text_from_record({"backbone": "roberta", "model": "definitely-not-a-local-model"})
    msg = str(err.value)
    assert "--text-model" not in msg and "huggingface-cli download definitely-not-a-local-model" in msg
    assert "HF_HOME" in msg and "extract.json" in msg
    with pytest.raises(PrvrError, match="no/such/ckpt.bin: file is missing"):
        text_from_record({"backbone": "clip", "model": "ViT-B-32", "pretrained": str(tmp_path / "no/such/ckpt.bin")})


LATIN1 = b'{"video": "park_balls", "text": "a ball rolls"}\n{"video": "street_boxes", "text": "caf\xe9 sign"}\n'


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--fps", "-1"], "error: --fps -1: must be a finite number > 0"),
        (["--fps", "0"], "error: --fps 0: must be a finite number > 0"),
        (["--clip-seconds", "0"], "error: --clip-seconds 0: must be"),
        (["--batch-size", "0"], "error: --batch-size 0: must be"),
        (["--timeout", "-5"], "error: --timeout -5: must be"),
        (["--workers", "0"], "error: --workers 0: must be >= 1"),
        (["--captions", "LATIN1"], "bad.jsonl:2: not UTF-8 (byte 0xe9"),
        (["--name", "../escape"], "error: collection name '../escape': must be a plain folder name"),
    ],
)
def test_bad_extract_input_is_one_line_error(tmp_path, extra, expected):
    (tmp_path / "bad.jsonl").write_bytes(LATIN1)
    extra = [str(tmp_path / "bad.jsonl") if x == "LATIN1" else x for x in extra]
    out = tmp_path / "root" / "out"
    res = prvr("extract", str(SAMPLES), "--out", str(out), "--name", "x", *TINY_MODELS, *extra)
    assert res.returncode == 1 and len(lines_of(res)) == 1 and expected in res.stderr, res.stderr
    assert not (tmp_path / "root" / "escape").exists() and not list(tmp_path.rglob("*.npz"))


def test_missing_local_clip_checkpoint_is_named(tmp_path):
    res = prvr(
        "extract",
        str(SAMPLES),
        "--out",
        str(tmp_path),
        "--name",
        "x",
        "--clip-model",
        "ViT-B-32",
        "--clip-pretrained",
        str(tmp_path / "ckpt.bin"),
    )
    assert res.returncode == 1 and lines_of(res) == [
        f"error: {tmp_path / 'ckpt.bin'}: file is missing (open_clip ViT-B-32 checkpoint)"
    ], res.stderr
