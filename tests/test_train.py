"""Training mechanics on tiny synthetic photos: hint simulation, the schedule, and resume."""
import numpy as np
import pytest
import torch
from skimage import io

from vidcolor import data as D
from vidcolor.errors import VidcolorError
from vidcolor.train import TrainConfig, get_lr, train


def test_simulate_hints_share_without_hints():
    ab = torch.randn(64, 2, 16, 16) * 20
    rng = np.random.default_rng(0)
    _, mask = D.simulate_hints(ab, rng, p_none=1.0)
    assert mask.sum() == 0
    hint, mask = D.simulate_hints(ab, rng, p_none=0.0)
    assert (mask.flatten(1).sum(1) > 0).all()  # every image got at least one hint
    _, mask = D.simulate_hints(ab, np.random.default_rng(0), p_none=0.35)
    share = (mask.flatten(1).sum(1) == 0).float().mean().item()
    assert 0.15 < share < 0.55


def test_hints_are_patch_means_of_truth():
    ab = torch.randn(4, 2, 32, 32) * 20
    hint, mask = D.simulate_hints(ab, np.random.default_rng(3), p_none=0.0)
    on = mask.expand_as(hint) > 0
    assert on.any()
    assert (hint[~on] == 0).all()
    # a hint is the mean of a patch of at most 4x4 pixels, so it lies within that patch's range
    assert hint[on].abs().max() <= ab.abs().max()


def test_lr_schedule_warms_up_then_decays_to_min():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup=10, max_steps=100)
    assert get_lr(0, cfg) < get_lr(9, cfg) <= cfg.lr
    later = [get_lr(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(later, later[1:]))
    assert later[-1] == pytest.approx(cfg.min_lr)
    assert get_lr(500, cfg) == pytest.approx(cfg.min_lr)  # past the horizon it stays at min_lr


@pytest.fixture
def tiny_photos(tmp_path):
    rng = np.random.default_rng(7)
    (tmp_path / "train").mkdir()
    for i in range(6):
        y, x = np.mgrid[0:48, 0:64]
        img = np.stack([(x * 4 + i * 30) % 256, (y * 5) % 256, rng.integers(0, 256, (48, 64))], -1)
        io.imsave(tmp_path / "train" / f"src{i % 2}__{i}.png", img.astype(np.uint8), check_contrast=False)
    return tmp_path


def _cfg(data_dir, out):
    return TrainConfig(data_dir=str(data_dir), out=str(out), batch=2, crop=32, warmup=2, max_steps=8,
                       threads=1, eval_every=10_000, hint_p_none=0.35)


def test_resume_equals_uninterrupted_and_records_overrides(tiny_photos, tmp_path):
    whole = torch.load(train(_cfg(tiny_photos, tmp_path / "a"), steps=4, progress=False), weights_only=True)
    train(_cfg(tiny_photos, tmp_path / "b"), steps=2, progress=False)
    parts = torch.load(train(_cfg(tiny_photos, tmp_path / "b"), steps=2, progress=False), weights_only=True)
    assert whole["step"] == parts["step"] == 4
    for k, v in whole["model"].items():
        assert torch.equal(v, parts["model"][k]), k
    # a resume that changes a setting on purpose keeps it and says so in the history
    cfg = _cfg(tiny_photos, tmp_path / "b")
    st = torch.load(train(cfg, steps=1, progress=False, overrides={"hint_p_none": 0.2}), weights_only=True)
    assert st["train_config"]["hint_p_none"] == 0.2
    assert {"step": 4, "changed": {"hint_p_none": 0.2}}.items() <= st["history"][-1].items()
    # a new rebalancing lambda brings its own prior: with none (1.0) every class weighs the same
    st2 = torch.load(train(cfg, steps=1, progress=False, overrides={"rebalance": 1.0}), weights_only=True)
    assert st2["train_config"]["rebalance"] == 1.0
    assert not torch.allclose(st["rebalance"], st2["rebalance"])
    assert torch.allclose(st2["rebalance"], st2["rebalance"][0].expand_as(st2["rebalance"]), rtol=1e-4)


def test_export_prior_alpha_takes_back_rebalancing_at_readout(tiny_photos, tmp_path):
    from vidcolor.train import export_weights
    from vidcolor.weights import load_model

    ckpt = train(_cfg(tiny_photos, tmp_path / "r"), steps=1, progress=False)
    export_weights(ckpt, tmp_path / "plain.pt")
    export_weights(ckpt, tmp_path / "taken.pt", prior_alpha=1.0)
    plain, taken = load_model(tmp_path / "plain.pt"), load_model(tmp_path / "taken.pt")
    w = torch.load(ckpt, weights_only=True)["rebalance"]
    assert torch.allclose(taken.readout_bias, w.log())
    assert (plain.readout_bias == 0).all()
    # logits that favour the most up-weighted (rarest) bin only by its own rebalancing weight:
    # after taking the rebalancing back, every bin is equally likely, so the mean is the bins' mean
    logits = w.log().view(1, -1, 1, 1).expand(1, -1, 2, 2).clone()
    mean = taken.bins.mean(0)
    assert torch.allclose(taken.decode_ab(logits, 1.0)[0, :, 0, 0], mean, atol=1e-4)
    assert not torch.allclose(plain.decode_ab(logits, 1.0)[0, :, 0, 0], mean, atol=1.0)


def test_damp_changes_sampling_and_rejects_unknown_sources(tiny_photos, tmp_path):
    """--damp scales chosen sources' sampling shares; it is saved with the run, and a typo is an error."""
    from vidcolor import data as D

    items = D.read_manifest(tiny_photos)
    base = D.source_weights(items, {})
    damped = D.source_weights(items, {"src0": 0.25})
    share = lambda p: sum(pi for it, pi in zip(items, p) if it.source == "src0")  # noqa: E731
    assert share(base) == pytest.approx(0.5) and share(damped) == pytest.approx(0.25 / 1.25)
    cfg = _cfg(tiny_photos, tmp_path / "d")
    train(cfg, steps=1, progress=False)  # a run from before --damp resumes with a new setting
    st = torch.load(train(cfg, steps=1, progress=False, overrides={"damp": {"src0": 0.25}}), weights_only=True)
    assert st["train_config"]["damp"] == {"src0": 0.25}
    assert st["history"][-1]["changed"] == {"damp": {"src0": 0.25}}
    bad = _cfg(tiny_photos, tmp_path / "e")
    bad.damp = {"lfww": 0.5}
    with pytest.raises(ValueError, match="lfww"):
        train(bad, steps=1, progress=False)


@pytest.mark.parametrize("kind", ["film", "stock"])
def test_film_damage_and_stock_greys_change_only_the_input_l(kind):
    """Film damage (vidcolor.film.degrade_l) and a film stock's grey (spectral_l) touch the network's
    L alone: the truth, the crops and the hints are those of the same batch drawn without them, and
    a share of 0 changes nothing."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    probs = np.full(3, 1 / 3)
    lab0, x0 = D.make_batch(images, probs, 8, 32, np.random.default_rng(5), p_none=0.0)
    lab1, x1 = D.make_batch(images, probs, 8, 32, np.random.default_rng(5), p_none=0.0, **{kind: 1.0})
    assert torch.equal(lab0, lab1) and torch.equal(x0[:, 1:], x1[:, 1:])
    assert (x0[:, 0] - x1[:, 0]).abs().flatten(1).amax(1).min() > 0.01  # every image's L changed
    from vidcolor.color import normalize_l
    assert torch.equal(x0[:, :1], normalize_l(lab0[:, :1]))


def test_film_luminance_round_trip_and_range():
    from vidcolor.film import degrade_l
    from vidcolor.color import l_to_y, rgb_to_l, y_to_l

    rgb = torch.rand(2, 3, 20, 20)
    L = rgb_to_l(rgb)
    assert torch.allclose(y_to_l(l_to_y(L)), L, atol=1e-3)
    # Y of pure grey 0.5 in sRGB is 0.214; the film curve must be the colour module's
    assert l_to_y(rgb_to_l(torch.full((1, 3, 1, 1), 0.5))).item() == pytest.approx(0.2140, abs=1e-3)
    out = degrade_l(L * 0 + 100, np.random.default_rng(1), p=1.0)
    assert out.min() >= 0 and out.max() <= 100
    assert torch.equal(degrade_l(L, np.random.default_rng(1), p=0.0), L)


def test_eval_items_fixed_order_dev_only_and_clear_errors(tmp_path):
    (tmp_path / "train").mkdir()
    names = [f"s{i % 3}__{i}.png" for i in range(200)]
    grey = np.full((8, 12), 90, np.uint8)
    for n in names:
        io.imsave(tmp_path / "train" / n, grey, check_contrast=False)
    dev = D.eval_items(tmp_path)
    assert dev and all(D.is_dev(it.file) for it in dev)
    assert len(dev) == sum(D.is_dev(n) for n in names)
    assert [it.file for it in dev] == [it.file for it in D.sha1_order(list(reversed(dev)))]
    assert [it.file for it in D.eval_items(tmp_path, limit=3)] == [it.file for it in dev[:3]]
    assert len(D.eval_items(tmp_path, "all")) == 200
    img = D.load_rgb(tmp_path / "train" / names[0])  # a grey file comes back as three equal channels
    assert img.shape == (8, 12, 3) and (img == 90).all()
    (tmp_path / "train" / "bad__x.png").write_bytes(b"not a png")
    with pytest.raises(VidcolorError, match="cannot read"):
        D.load_rgb(tmp_path / "train" / "bad__x.png")
    with pytest.raises(VidcolorError, match="no train/ folder"):
        D.eval_items(tmp_path / "nowhere")


def test_worker_processes_draw_the_batches_of_the_main_process(tiny_photos):
    from vidcolor.train import batch_for_step, batches

    images = D.load_images(tiny_photos, D.read_manifest(tiny_photos), progress=False)
    probs = np.full(len(images), 1 / len(images))
    cfg = _cfg(tiny_photos, tiny_photos / "o")
    cfg.film, cfg.stock = 0.5, 0.5
    feed = batches(images, probs, cfg, start=3, workers=2)
    made = [next(feed) for _ in range(3)]
    feed.close()
    for step, (lab, x) in zip((3, 4, 5), made):
        lab_ref, x_ref = batch_for_step(images, probs, cfg, step)
        assert torch.equal(lab, lab_ref) and torch.equal(x, x_ref)
    assert not torch.equal(made[0][1], made[1][1])


def test_init_from_starts_a_new_run_from_the_ema_weights(tiny_photos, tmp_path):
    """--init-from: step 0, the source's EMA weights and arch, a fresh optimizer with the pretrained
    encoder's group at encoder_lr times the rate; an exported (slim) file is refused."""
    from vidcolor.train import export_weights, slim_checkpoint

    src_cfg = _cfg(tiny_photos, tmp_path / "src")
    src_cfg.arch = "effdec"
    src = torch.load(train(src_cfg, steps=2, progress=False), weights_only=True)
    cfg = _cfg(tiny_photos, tmp_path / "e2e")
    cfg.init_from, cfg.encoder_lr = str(tmp_path / "src" / "ckpt.pt"), 0.25
    st = torch.load(train(cfg, steps=0, progress=False), weights_only=True)
    assert st["step"] == 0 and st["config"]["arch"] == "effdec"
    for k, v in src["ema"].items():
        assert torch.equal(v, st["model"][k]), k
    st = torch.load(train(cfg, steps=1, progress=False), weights_only=True)  # resumes its own checkpoint
    groups = st["optimizer"]["param_groups"]
    assert st["step"] == 1 and len(groups) == 2
    assert groups[1]["lr"] == pytest.approx(0.25 * groups[0]["lr"])
    export_weights(tmp_path / "src" / "ckpt.pt", tmp_path / "exported.pt")
    bad = _cfg(tiny_photos, tmp_path / "bad")
    bad.init_from = str(tmp_path / "exported.pt")
    with pytest.raises(ValueError, match="training checkpoint"):
        train(bad, steps=1, progress=False)
    # a slim checkpoint (EMA only, here in float16) starts a run too, with those weights rounded
    slim_checkpoint(tmp_path / "src" / "ckpt.pt", tmp_path / "slim.pt", half=True)
    assert "optimizer" not in torch.load(tmp_path / "slim.pt", weights_only=True)
    cfg = _cfg(tiny_photos, tmp_path / "from-slim")
    cfg.init_from = str(tmp_path / "slim.pt")
    st = torch.load(train(cfg, steps=0, progress=False), weights_only=True)
    for k, v in src["ema"].items():
        assert torch.equal(v.half().to(v.dtype) if v.is_floating_point() else v, st["model"][k]), k


def test_eval_dev_temperature_is_the_users_readout_on_a_folded_file(tiny_photos, tmp_path):
    """eval_dev --temperature T on a file exported with T folded in equals T on the plain export
    (a second scaling once read it at 0.6 * 0.6 / 0.38), and the sweep refuses a folded file."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from vidcolor.train import export_weights

    ckpt = train(_cfg(tiny_photos, tmp_path / "t"), steps=2, progress=False)
    export_weights(ckpt, tmp_path / "plain.pt")
    export_weights(ckpt, tmp_path / "folded.pt", temperature=0.6)
    script = Path(__file__).resolve().parents[1] / "scripts" / "eval_dev.py"

    def psnrs(weights: str, *extra: str) -> list[float]:
        out = tmp_path / f"{Path(weights).stem}{len(extra)}.json"
        subprocess.run([sys.executable, str(script), "--weights", weights, "--data-dir", str(tiny_photos),
                        "--split", "all", "--quiet", "--short-side", "48", "--json", str(out), *extra],
                       check=True, capture_output=True)
        return [r["pred_psnr"] for r in json.loads(out.read_text())["items"]]

    plain = psnrs(str(tmp_path / "plain.pt"), "--temperature", "0.6")
    assert psnrs(str(tmp_path / "folded.pt"), "--temperature", "0.6") == pytest.approx(plain, abs=1e-3)
    assert psnrs(str(tmp_path / "folded.pt")) == pytest.approx(plain, abs=1e-3)  # its own T by default
    assert psnrs(str(tmp_path / "plain.pt")) != pytest.approx(plain, abs=1e-3)   # 0.38 is another readout
    r = subprocess.run([sys.executable, str(script), "--weights", str(tmp_path / "folded.pt"), "--readouts", "0:0.5",
                        "--rebalance-from", str(ckpt), "--data-dir", str(tiny_photos)], capture_output=True, text=True)
    assert r.returncode != 0 and "folded" in r.stderr and "Traceback" not in r.stderr
